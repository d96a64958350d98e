"""PDF: the text layer first (fast), OCR for the pages that have none.

A PDF is often a mix: typed pages with a text layer and scanned pages (a signed
form, an appendix) without one. unstructured's ``fast`` strategy reads the text
layer and silently returns nothing for a scanned page, so every page that came
back (nearly) empty is rendered and OCR'd on its own, keeping its page number.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ingest.parsers import ocr
from ingest.parsers.base import Element, ParsedDocument, ParseError
from ingest.parsers.elements import convert_elements
from ingest.parsers.limits import check_page_count
from ingest.parsers.unstructured_setup import prepare_unstructured

if TYPE_CHECKING:
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

# A page whose text layer holds less than this is treated as scanned: a stamped
# page number or file reference on top of a scan must not hide the scan.
_MIN_TEXT_CHARS = 20


def _open(path: Path) -> PdfReader:
    """Open the PDF once to reject encrypted and damaged files with a clear reason."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password and open freely.
            try:
                opened = bool(reader.decrypt(""))
            except Exception:
                opened = False
            if not opened:
                raise ParseError("The PDF is password-protected. Upload a copy without a password.")
        len(reader.pages)  # reads the page tree: a broken one fails here, not later
        return reader
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"The PDF is damaged and could not be read ({exc}).") from exc


def _page_dpi(reader: PdfReader, page: int) -> int:
    try:
        box = reader.pages[page - 1].cropbox
        return ocr.dpi_for(float(box.width) / 72, float(box.height) / 72)
    except Exception:  # a broken box: pdftoppm falls back to the page's media box
        return ocr.OCR_DPI


class PdfParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"pdf"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        reader = _open(path)
        pages = len(reader.pages)
        check_page_count(pages)
        prepare_unstructured()
        from unstructured.partition.pdf import partition_pdf

        try:
            raw = partition_pdf(filename=str(path), strategy="fast", languages=[ocr.LANGUAGE])
        except Exception as exc:
            raise ParseError(f"The PDF could not be parsed ({type(exc).__name__}: {exc}).") from exc
        by_page: dict[int, list[Element]] = defaultdict(list)
        for element in convert_elements(raw):
            by_page[element.page or 1].append(element)

        scanned = [n for n in range(1, pages + 1) if sum(len(e.text) for e in by_page[n]) < _MIN_TEXT_CHARS]
        if scanned:
            self._ocr(path, reader, scanned, by_page)
        elements = [element for n in sorted(by_page) for element in by_page[n]]
        if not any(e.text.strip() for e in elements):
            raise ParseError("The PDF has no text: neither a text layer nor anything OCR could read.")
        return ParsedDocument(elements=elements, pages=pages)

    def _ocr(self, path: Path, reader: PdfReader, scanned: list[int], by_page: dict[int, list[Element]]) -> None:
        """Replace the elements of ``scanned`` pages with what OCR reads on them."""
        try:
            ocr.require_ocr()
        except ParseError:
            if any(by_page.values()):
                # The typed pages are still worth having; the reason is in the log.
                logger.warning("%s: %d page(s) without text left out: tesseract is missing", path.name, len(scanned))
                return
            raise

        # pypdf is not thread-safe: page sizes are read here, before the threads start.
        dpis = {page: _page_dpi(reader, page) for page in scanned}

        def read(page: int) -> str:
            image = ocr.render_pdf_page(path, page, dpi=dpis[page])
            return ocr.ocr_image(image, what=f"page {page}")

        # Only the child processes run side by side; unstructured classifies the text
        # here, in this thread, as it is not known to be thread-safe.
        for page, text in zip(scanned, ocr.in_parallel(read, scanned), strict=True):
            found = ocr.text_elements(text, page=page)
            if sum(len(e.text) for e in found) > sum(len(e.text) for e in by_page[page]):
                by_page[page] = found
