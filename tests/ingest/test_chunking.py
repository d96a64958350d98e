from __future__ import annotations

import pytest

from ingest.chunking import HEADING_SEPARATOR, approximate_token_count, chunk_elements
from ingest.parsers.base import Element


def words(n: int, word: str = "alpha") -> str:
    return " ".join([word] * n)


def test_titles_open_sections_and_are_carried_as_headings() -> None:
    chunks = chunk_elements(
        [
            Element("Travel", kind="title", page=1),
            Element("Flights are booked centrally.", page=1),
            Element("Security", kind="title", page=1),
            Element("Badges are worn visibly.", page=1),
        ],
        max_tokens=200,
    )
    assert [(c.heading, c.text) for c in chunks] == [
        ("Travel", "Travel\nFlights are booked centrally."),
        ("Security", "Security\nBadges are worn visibly."),
    ]


def test_a_chunk_never_spans_two_pages() -> None:
    chunks = chunk_elements(
        [Element("Intro", kind="title", page=1), Element("one", page=1), Element("two", page=2)], max_tokens=200
    )
    assert [(c.page_start, c.page_end) for c in chunks] == [(1, 1), (2, 2)]
    assert chunks[1].heading == "Intro"  # the section continues on the next page
    assert chunks[1].embedding_text == "Intro\ntwo"


def test_consecutive_titles_stay_with_the_following_text() -> None:
    chunks = chunk_elements(
        [Element("Chapter 2", kind="title"), Element("Methods", kind="title"), Element("We measured.")],
        max_tokens=200,
    )
    assert len(chunks) == 1
    assert chunks[0].text == "Chapter 2\nMethods\nWe measured."
    # Together they are the section's heading; a title after text starts a new one.
    assert chunks[0].heading == f"Chapter 2{HEADING_SEPARATOR}Methods"
    assert chunks[0].embedding_text == chunks[0].text  # the text already opens with both
    later = chunk_elements(
        [
            Element("Chapter 2", kind="title"),
            Element("Methods", kind="title"),
            Element("We measured."),
            Element("Results", kind="title"),
            Element("It worked."),
        ],
        max_tokens=200,
    )
    assert [c.heading for c in later] == [f"Chapter 2{HEADING_SEPARATOR}Methods", "Results"]


def test_no_chunk_exceeds_the_token_budget() -> None:
    elements = [Element(words(40, f"w{i}"), page=1) for i in range(20)]
    elements.append(Element(words(700, "long") + ". " + words(300, "tail"), page=1))
    chunks = chunk_elements(elements, max_tokens=100)
    assert all(approximate_token_count(c.embedding_text) <= 100 for c in chunks)
    # Nothing is lost: every word of the input is in some chunk, in order.
    joined = " ".join(c.text.replace("\n", " ") for c in chunks).split()
    expected = " ".join(e.text for e in elements).replace(".", "").split()
    assert [w.rstrip(".") for w in joined] == expected


def test_empty_elements_give_no_chunks() -> None:
    assert chunk_elements([Element("   "), Element("")], max_tokens=100) == []


HEADER = "| Team | City | Cups |"


def table(rows: int, header: str = HEADER, page: int | None = 1) -> list[Element]:
    return [
        Element(f"| Team {n} | City {n} | {n} |", kind="table", page=page, table_header=header) for n in range(rows)
    ]


def test_table_header_opens_every_chunk_of_a_long_table() -> None:
    elements = [Element("Standings", kind="title", page=1), *table(60)]
    chunks = chunk_elements(elements, max_tokens=40)
    assert len(chunks) > 3
    for chunk in chunks:
        body = chunk.text.removeprefix("Standings\n")
        assert body.startswith(HEADER + "\n")
        assert chunk.embedding_text.count(HEADER) == 1
        assert approximate_token_count(chunk.embedding_text) <= 40
    rows = [line for c in chunks for line in c.text.splitlines() if line.startswith("| Team ") and line != HEADER]
    assert rows == [e.text for e in elements[1:]]  # every row once, in order


def test_table_header_is_repeated_after_a_page_change() -> None:
    chunks = chunk_elements([*table(2, page=1), *table(2, page=2)], max_tokens=200)
    assert [(c.page_start, c.text.splitlines()[0]) for c in chunks] == [(1, HEADER), (2, HEADER)]


def test_text_after_a_table_does_not_get_its_header() -> None:
    other = "| Name | Role |"
    elements = [
        *table(2),
        Element("Totals are audited.", page=1),
        Element("| Ana | Chair |", kind="table", page=1, table_header=other),
    ]
    chunks = chunk_elements(elements, max_tokens=200)
    assert len(chunks) == 1
    assert chunks[0].text.splitlines() == [
        HEADER,
        "| Team 0 | City 0 | 0 |",
        "| Team 1 | City 1 | 1 |",
        "Totals are audited.",
        other,
        "| Ana | Chair |",
    ]


def test_an_over_long_row_is_split_and_every_piece_keeps_the_header() -> None:
    row = "| " + words(120, "cell") + " |"
    chunks = chunk_elements([Element(row, kind="table", page=1, table_header=HEADER)], max_tokens=50)
    assert len(chunks) > 2
    assert all(c.text.startswith(HEADER + "\n") for c in chunks)
    assert all(approximate_token_count(c.embedding_text) <= 50 for c in chunks)


def test_a_header_too_long_to_repeat_is_written_once() -> None:
    header = "| " + " | ".join(f"column {n}" for n in range(30)) + " |"
    chunks = chunk_elements(table(20, header=header), max_tokens=60)
    assert sum(c.text.count("column 29") for c in chunks) == 1
    assert all(approximate_token_count(c.embedding_text) <= 60 for c in chunks)


def test_chunking_a_large_table_is_linear() -> None:
    """10,000 rows: each row and the header are counted once, never the chunk so far."""
    counted: list[int] = []

    def count(text: str) -> int:
        counted.append(len(text))
        return approximate_token_count(text)

    elements = table(10_000)
    chunks = chunk_elements(elements, max_tokens=200, count_tokens=count)
    assert len(counted) == len(elements) + 1
    assert sum(counted) == sum(len(e.text) for e in elements) + len(HEADER)
    assert all(c.text.startswith(HEADER) for c in chunks)


def test_chunk_size_zero_means_the_models_whole_window(settings, tmp_path) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from ingest.pipeline import chunk_max_tokens

    settings.CHUNK_MAX_TOKENS = 150
    assert chunk_max_tokens() == 150
    settings.CHUNK_MAX_TOKENS = 0
    assert chunk_max_tokens() == 254  # the packaged MiniLM reads 256 pieces, [CLS] and [SEP] included
    settings.EMBEDDING_MODEL_PATH = str(tmp_path)  # a folder without the model's configuration
    with pytest.raises(ImproperlyConfigured, match="CHUNK_MAX_TOKENS"):
        chunk_max_tokens()
