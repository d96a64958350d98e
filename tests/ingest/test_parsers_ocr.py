"""Scanned PDFs and images, read by tesseract (Debian's tesseract-ocr and poppler-utils)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from ingest.parsers import ParseError, parse_file
from ingest.parsers import ocr as ocr_module
from tests.conftest import _require
from tests.ingest.parser_files import multipage_tiff, text_image, write
from tests.support.documents import make_pdf


@pytest.fixture(autouse=True)
def _ocr_tools() -> None:
    _require(
        bool(shutil.which("tesseract") and shutil.which("pdftoppm")),
        "tesseract and pdftoppm are needed (run .ci/system-packages.sh)",
    )


def hide_tesseract(monkeypatch) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda command, **kwargs: None if command == "tesseract" else which(command))


def page_texts(parsed) -> dict[int, str]:
    texts: dict[int, str] = {}
    for element in parsed.elements:
        texts[element.page] = texts.get(element.page, "") + " " + element.text
    return texts


def test_scanned_pdf_is_read_by_ocr(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "loremipsum-flat.pdf", name="loremipsum-flat.pdf")
    assert file_type == "pdf"
    assert parsed.pages == 1
    text = page_texts(parsed)[1]
    assert "Lorem ipsum dolor sit amet" in text
    assert "Phasellus ornare quis diam" in text


def test_scanned_table_is_read_by_ocr(formats_dir: Path) -> None:
    _, parsed = parse_file(formats_dir / "single_table.pdf", name="single_table.pdf")
    text = page_texts(parsed)[1]
    assert "64,058" in text
    assert "mean chunks per document" in text


def test_only_pages_without_text_are_ocrd_and_keep_their_numbers(
    formats_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    typed = PdfReader(io.BytesIO(make_pdf(["Typed preface about the Zephyr project.", "Typed closing remarks."])))
    writer.add_page(typed.pages[0])
    writer.add_page(PdfReader(formats_dir / "loremipsum-flat.pdf").pages[0])
    writer.add_page(typed.pages[1])
    out = io.BytesIO()
    writer.write(out)
    rendered: list[int] = []
    render = ocr_module.render_pdf_page

    def recording_render(path: Path, page: int, *, dpi: int) -> bytes:
        rendered.append(page)
        return render(path, page, dpi=dpi)

    monkeypatch.setattr(ocr_module, "render_pdf_page", recording_render)
    _, parsed = parse_file(write(tmp_path, "mixed.pdf", out.getvalue()))

    assert rendered == [2]
    texts = page_texts(parsed)
    assert "Zephyr project" in texts[1]
    assert "Lorem ipsum dolor sit amet" in texts[2]
    assert "closing remarks" in texts[3]
    numbers = [e.page or 0 for e in parsed.elements]
    assert numbers == sorted(numbers)


def test_scanned_pdf_without_tesseract_fails_with_the_reason(formats_dir: Path, monkeypatch) -> None:
    hide_tesseract(monkeypatch)
    with pytest.raises(ParseError, match="needs OCR, but 'tesseract' is not installed"):
        parse_file(formats_dir / "loremipsum-flat.pdf", name="loremipsum-flat.pdf")


def test_typed_pages_survive_when_tesseract_is_missing(tmp_path: Path, monkeypatch) -> None:
    hide_tesseract(monkeypatch)
    _, parsed = parse_file(write(tmp_path, "gap.pdf", make_pdf(["The typed page about the Zephyr desk.", ""])))
    assert parsed.pages == 2
    assert {e.page for e in parsed.elements} == {1}


def test_blank_pdf_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="no text"):
        parse_file(write(tmp_path, "blank.pdf", make_pdf(["", ""])))


def test_jpeg_page_is_read_by_ocr(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "layout-parser-paper-fast.jpg", name="layout-parser-paper-fast.jpg")
    assert file_type == "jpg"
    assert parsed.pages == 1
    text = page_texts(parsed)[1]
    # A 72-dpi page: read at all only because small images are upscaled first.
    assert "LayoutParser: A Unified Toolkit for Deep Learning" in text
    assert "document image analysis" in text


def test_png_is_read_by_ocr(tmp_path: Path) -> None:
    image = text_image(["Quarterly revenue grew in Zanzibar", "The auditor signed on Tuesday"])
    file_type, parsed = parse_file(write(tmp_path, "scan", image), name="scan")
    assert file_type == "png"
    text = page_texts(parsed)[1]
    assert "Quarterly revenue grew in Zanzibar" in text
    assert "auditor signed on Tuesday" in text


def test_multipage_tiff_is_read_frame_by_frame(tmp_path: Path) -> None:
    tiff = multipage_tiff([["First page mentions the harbour"], ["Second page mentions the glacier"]])
    file_type, parsed = parse_file(write(tmp_path, "fax.tif", tiff), name="fax.tif")
    assert file_type == "tiff"
    assert parsed.pages == 2
    texts = page_texts(parsed)
    assert "harbour" in texts[1] and "glacier" not in texts[1]
    assert "glacier" in texts[2]


def test_tiff_over_the_page_limit_fails_before_any_ocr(tmp_path: Path, settings) -> None:
    settings.INGEST_MAX_PAGES = 1
    tiff = multipage_tiff([["one"], ["two"]])
    with pytest.raises(ParseError, match="2 pages, more than the limit of 1"):
        parse_file(write(tmp_path, "fax.tif", tiff), name="fax.tif")


def test_image_without_text_fails_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="No text was found in the image"):
        parse_file(write(tmp_path, "white.png", text_image([])), name="white.png")


def test_image_without_tesseract_fails_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    hide_tesseract(monkeypatch)
    with pytest.raises(ParseError, match="tesseract-ocr"):
        parse_file(write(tmp_path, "scan.png", text_image(["Hello"])), name="scan.png")


def test_huge_pages_are_rendered_at_a_bounded_resolution() -> None:
    assert ocr_module.dpi_for(8.5, 11) == ocr_module.OCR_DPI
    poster = ocr_module.dpi_for(200, 200)
    assert (200 * poster) ** 2 <= ocr_module.MAX_PIXELS


def test_pages_without_an_image_are_not_sent_to_ocr(tmp_path: Path, formats_dir: Path, monkeypatch) -> None:
    # Blank pages (or a page number alone) have nothing OCR could read: with tesseract
    # missing, the file fails for having no text, not for needing OCR.
    hide_tesseract(monkeypatch)
    with pytest.raises(ParseError, match="no text"):
        parse_file(write(tmp_path, "blank.pdf", make_pdf(["", ""])))
    # A scan is an image: it is still sent to OCR.
    with pytest.raises(ParseError, match="needs OCR"):
        parse_file(formats_dir / "loremipsum-flat.pdf", name="loremipsum-flat.pdf")
