"""Plain text is read directly: paragraphs, headings, lists, pages, encodings."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.parsers import ParseError, parse_file
from ingest.parsers.text import decode_text, text_elements


def kinds(text: str) -> list[tuple[str, str]]:
    elements, _ = text_elements(text)
    return [(e.kind, e.text) for e in elements]


def test_paragraphs_are_joined_and_headings_found() -> None:
    text = (
        "Travel policy\n\n"
        "Employees may claim a meal allowance\nwhen travelling on company business.\n\n"
        "Approvals\n"
        "=========\n\n"
        "A manager approves every trip in advance."
    )
    assert kinds(text) == [
        ("title", "Travel policy"),
        ("text", "Employees may claim a meal allowance when travelling on company business."),
        ("title", "Approvals"),
        ("text", "A manager approves every trip in advance."),
    ]


def test_a_first_line_standing_alone_is_the_title_even_as_a_sentence() -> None:
    assert kinds("Statins lower the risk of stroke in older adults.\n\nWe followed 4,000 patients.") == [
        ("title", "Statins lower the risk of stroke in older adults."),
        ("text", "We followed 4,000 patients."),
    ]
    assert kinds("A first paragraph\nthat spans two lines.\n\nSecond.") == [
        ("text", "A first paragraph that spans two lines."),
        ("text", "Second."),
    ]


def test_a_short_sentence_is_not_a_heading_and_bullets_are_list_items() -> None:
    assert kinds("Some intro\ntext.\n\nCall the desk.\n\n- first step\n- second step\n\n* Org heading") == [
        ("text", "Some intro text."),
        ("text", "Call the desk."),
        ("list", "- first step"),
        ("list", "- second step"),
        ("title", "Org heading"),
    ]


def test_form_feeds_are_pages() -> None:
    elements, pages = text_elements("Page one text.\fPage two text.\n\nMore on two.")
    assert pages == 2
    assert [(e.page, e.text) for e in elements] == [
        (1, "Page one text."),
        (2, "Page two text."),
        (2, "More on two."),
    ]


def test_without_form_feeds_there_are_no_pages() -> None:
    elements, pages = text_elements("Just one.\r\n\r\nAnd two.")
    assert pages is None
    assert [e.page for e in elements] == [None, None]
    assert [e.text for e in elements] == ["Just one.", "And two."]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln".encode(), "Grüße aus Köln"),
        ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
        (b"\xef\xbb\xbfwith a BOM", "with a BOM"),
        # Legacy 8-bit charsets, detected.
        ("Café crème brûlée, déjà vu, très bien".encode("cp1252"), "Café crème brûlée, déjà vu, très bien"),
        ("Привет, как дела? Это тест кодировки.".encode("cp1251"), "Привет, как дела? Это тест кодировки."),
    ],
)
def test_decoding(data: bytes, expected: str) -> None:
    assert decode_text(data) == expected


def test_parse_file_reads_text_through_this_parser(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(b"Quarterly report\n\nRevenue rose 12% to $4.1 billion.\n")
    file_type, parsed = parse_file(path, name="report.txt")
    assert file_type == "txt"
    assert [(e.kind, e.text) for e in parsed.elements] == [
        ("title", "Quarterly report"),
        ("text", "Revenue rose 12% to $4.1 billion."),
    ]


def test_whitespace_only_text_is_a_clear_failure(tmp_path: Path) -> None:
    path = tmp_path / "upload"
    path.write_bytes(b"\n \t\n\f\n")
    with pytest.raises(ParseError, match="No text could be extracted"):
        parse_file(path, name="blank.txt")
