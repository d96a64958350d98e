"""Citation markers of a finished answer: invalid ones removed and counted."""

from __future__ import annotations

from assistant.chat.citations import citations_clean


def test_valid_markers_are_kept_and_reported_as_cited() -> None:
    cleaned = citations_clean("Meals are 85 euros [2]. Badges are worn [3][1].", sources=3)
    assert cleaned.text == "Meals are 85 euros [2]. Badges are worn [3][1]."
    assert cleaned.cited == {1, 2, 3}
    assert cleaned.removed == 0


def test_markers_naming_no_source_are_removed_with_their_space() -> None:
    cleaned = citations_clean("Meals are 85 euros [7]. Flights go via Zephyr [2] [0].", sources=5)
    assert cleaned.text == "Meals are 85 euros. Flights go via Zephyr [2]."
    assert cleaned.cited == {2}
    assert cleaned.removed == 2


def test_lists_in_one_bracket_become_single_markers_without_the_bad_ones() -> None:
    cleaned = citations_clean("It is 85 euros [1, 9, 2].", sources=2)
    assert cleaned.text == "It is 85 euros [1][2]."
    assert cleaned.removed == 1
    assert cleaned.cited == {1, 2}


def test_bracketed_years_and_plain_text_are_left_alone() -> None:
    text = "Revenue grew in [2023], see section [a]."
    cleaned = citations_clean(text, sources=3)
    assert cleaned.text == text
    assert cleaned.removed == 0
    assert cleaned.cited == frozenset()


def test_an_answer_without_sources_keeps_no_marker() -> None:
    cleaned = citations_clean("Nothing found [1].", sources=0)
    assert cleaned.text == "Nothing found."
    assert cleaned.removed == 1
