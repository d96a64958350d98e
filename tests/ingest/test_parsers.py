from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from ingest.parsers import Element, ParseError, parse_file
from ingest.parsers.detect import detect_file_type
from tests.ingest.parser_files import encrypted_office_file, make_epub, make_zip, write
from tests.support.documents import HANDBOOK_PAGES, make_docx, make_pdf


def test_pdf_text_keeps_its_page_numbers(tmp_path: Path) -> None:
    file_type, parsed = parse_file(write(tmp_path, "h.pdf", make_pdf(HANDBOOK_PAGES)))
    assert file_type == "pdf"
    assert parsed.pages == 3
    allowance = [e for e in parsed.elements if "85 euros" in e.text]
    assert allowance and allowance[0].page == 2


def test_type_comes_from_content_not_the_extension(tmp_path: Path) -> None:
    lying_pdf = write(tmp_path, "report.docx", make_pdf(["Quarterly figures"]))
    lying_docx = write(tmp_path, "notes.pdf", make_docx([("Notes", "Body text")]))
    assert detect_file_type(lying_pdf, name="report.docx") == "pdf"
    assert detect_file_type(lying_docx, name="notes.pdf") == "docx"
    _, parsed = parse_file(lying_docx, name="notes.pdf")
    assert [e.kind for e in parsed.elements][:1] == ["title"]


def test_extension_only_chooses_the_flavour_of_plain_text(tmp_path: Path) -> None:
    path = write(tmp_path, "upload", b"# Heading\n\nSome text.\n")
    assert detect_file_type(path, name="readme.md") == "md"
    assert detect_file_type(path, name="readme.txt") == "txt"


def test_empty_file_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="empty"):
        parse_file(write(tmp_path, "empty.pdf", b""))


def test_corrupt_pdf_fails_with_a_reason(tmp_path: Path) -> None:
    broken = make_pdf(["Some text"])[:200]  # truncated mid-file
    with pytest.raises(ParseError, match="damaged"):
        parse_file(write(tmp_path, "broken.pdf", broken))


def test_a_reason_never_names_the_storage_path(tmp_path: Path) -> None:
    """Libraries quote the path they read; the portal shows the reason to people."""
    stored = write(tmp_path, "5f3a9c-upload.pdf", make_pdf(["Some text"])[:200])
    with pytest.raises(ParseError, match="damaged") as caught:
        parse_file(stored, name="Q3 report.pdf")
    assert str(tmp_path) not in str(caught.value)
    assert stored.name not in str(caught.value)


def test_password_protected_pdf_fails_with_a_reason(formats_dir: Path) -> None:
    with pytest.raises(ParseError, match="password-protected"):
        parse_file(formats_dir / "password.pdf", name="password.pdf")


@pytest.mark.parametrize(
    ("name", "file_type", "needle"),
    [
        ("fake-memo.pdf", "pdf", "200 laptops"),
        ("simple.docx", "docx", "favorite things"),
        ("fake-power-point.pptx", "pptx", "Bullet Slide"),
        ("stanley-cups.xlsx", "xlsx", "Stanley Cups"),
        ("example-10k-1p.html", "html", "TRANSITION REPORT"),
        ("codeblock.md", "md", "HTML Example"),
        ("fake-text-utf-16.txt", "txt", "test document"),
        ("family-day.eml", "eml", "family day"),
    ],
)
def test_real_files_of_common_formats_parse(formats_dir: Path, name: str, file_type: str, needle: str) -> None:
    detected, parsed = parse_file(formats_dir / name, name=name)
    assert detected == file_type
    text = " ".join(e.text for e in parsed.elements)
    assert needle.lower() in text.lower()


def test_unsupported_type_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="'json' are not supported"):
        parse_file(write(tmp_path, "data.json", b'{"budget": 1200, "currency": "EUR"}'), name="data.json")


def test_pdf_over_the_page_limit_fails_naming_the_limit(tmp_path: Path, settings) -> None:
    settings.INGEST_MAX_PAGES = 2
    with pytest.raises(ParseError, match=r"3 pages, more than the limit of 2 pages"):
        parse_file(write(tmp_path, "h.pdf", make_pdf(HANDBOOK_PAGES)))


def test_other_paged_formats_obey_the_page_limit_too(formats_dir: Path, settings) -> None:
    settings.INGEST_MAX_PAGES = 1
    with pytest.raises(ParseError, match="2 sheets, more than the limit of 1 page"):
        parse_file(formats_dir / "stanley-cups.xlsx", name="stanley-cups.xlsx")
    with pytest.raises(ParseError, match="6 pages, more than the limit of 1 page"):
        parse_file(formats_dir / "page-breaks.docx", name="page-breaks.docx")


def test_a_thousand_page_manual_passes_the_default_limits(tmp_path: Path) -> None:
    pages = [f"Procedure {n}\nTighten bolt {n} of the pump housing to the stated torque." for n in range(1, 1001)]
    _, parsed = parse_file(write(tmp_path, "manual.pdf", make_pdf(pages)))
    assert parsed.pages == 1000
    last = [e for e in parsed.elements if "bolt 1000 " in e.text]
    assert last and last[0].page == 1000


@pytest.mark.parametrize(
    ("name", "file_type", "needle", "page"),
    [
        ("list-item-example.pdf", "pdf", "How will the product meet market needs?", 2),
        ("reliance.pdf", "pdf", "Integrated Annual Report", 1),
        ("page-breaks.docx", "docx", "producing two page-breaks", 5),
        ("fake-power-point.pptx", "pptx", "Bullet Slide", 1),
    ],
)
def test_paged_formats_keep_the_page_of_each_passage(
    formats_dir: Path, name: str, file_type: str, needle: str, page: int
) -> None:
    detected, parsed = parse_file(formats_dir / name, name=name)
    assert detected == file_type
    assert [e.page for e in parsed.elements if needle in e.text][:1] == [page]


def test_rtf_parses_through_pandoc(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "fake-doc.rtf", name="fake-doc.rtf")
    assert file_type == "rtf"
    assert parsed.elements[0] == Element("My First Heading", kind="title")
    assert any("Row 1, Cell 1" in e.text for e in parsed.elements if e.kind == "table")


def test_odt_parses_through_pandoc(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "simple.odt", name="simple.odt")
    assert file_type == "odt"
    assert parsed.elements[0] == Element("These are a few of my favorite things:", kind="title")
    assert Element("Hockey", kind="list") in parsed.elements
    assert any("my second thought" in e.text for e in parsed.elements)


def test_epub_parses_through_pandoc(tmp_path: Path) -> None:
    book = make_epub("The Keeper", ["The lighthouse keeper polished the brass lantern every evening."])
    file_type, parsed = parse_file(write(tmp_path, "upload.bin", book), name="upload.bin")
    assert file_type == "epub"
    assert Element("The Keeper", kind="title") in parsed.elements
    assert any("brass lantern" in e.text for e in parsed.elements)


def test_pandoc_formats_fail_with_a_reason_when_pandoc_is_missing(formats_dir: Path, monkeypatch) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda command, **kwargs: None if command == "pandoc" else which(command))
    with pytest.raises(ParseError, match="need pandoc, which is not installed"):
        parse_file(formats_dir / "fake-doc.rtf", name="fake-doc.rtf")


def test_password_protected_office_document_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="password-protected"):
        parse_file(write(tmp_path, "salaries.xlsx", encrypted_office_file()), name="salaries.xlsx")


def test_password_protected_odt_fails_with_a_reason(formats_dir: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(formats_dir / "simple.odt") as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    manifest = members["META-INF/manifest.xml"].decode()
    members["META-INF/manifest.xml"] = manifest.replace(
        'manifest:full-path="content.xml" />',
        'manifest:full-path="content.xml"><manifest:encryption-data manifest:checksum="x"/></manifest:file-entry>',
    ).encode()
    assert b"encryption-data" in members["META-INF/manifest.xml"]
    with pytest.raises(ParseError, match="password-protected"):
        parse_file(write(tmp_path, "locked.odt", make_zip(members)), name="locked.odt")


@pytest.mark.parametrize(
    "name",
    [
        "simple.docx",
        "fake-power-point.pptx",
        "stanley-cups.xlsx",
        "simple.odt",
        "fake-email.msg",
        "layout-parser-paper-fast.jpg",
        "simple.zip",
        "fake-memo.pdf",
    ],
)
def test_truncated_files_fail_with_a_reason_never_a_crash(formats_dir: Path, tmp_path: Path, name: str) -> None:
    content = (formats_dir / name).read_bytes()
    with pytest.raises(ParseError):
        parse_file(write(tmp_path, name, content[: len(content) // 2]), name=name)


def test_malformed_pptx_parses_or_fails_with_a_reason(formats_dir: Path) -> None:
    try:
        _, parsed = parse_file(formats_dir / "fake-power-point-malformed.pptx", name="fake-power-point-malformed.pptx")
    except ParseError as exc:
        assert str(exc)
    else:
        assert parsed.elements[0].page == 1


def test_a_file_without_text_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="No text could be extracted"):
        parse_file(write(tmp_path, "blank.txt", b"   \n\n  \n"), name="blank.txt")
