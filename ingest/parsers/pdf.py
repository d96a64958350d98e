"""PDF: the text layer first (fast), OCR for the pages that have none.

The text layer is read by PDFium (``INGEST_PDF_ENGINE=pdfium``, the default;
Apache-2.0/BSD), page ranges side by side in child processes (``pdf_pages``), and
given its headings, paragraphs and table rows back in ``page_layout``. ``poppler``
(``pdftotext -layout``) reads the same way; ``unstructured`` is the slower
pdfminer path, kept as a choice.

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

from django.conf import settings

from ingest.parsers import ocr
from ingest.parsers.base import Element, ParsedDocument, ParseError, report_progress
from ingest.parsers.elements import convert_elements
from ingest.parsers.limits import check_page_count
from ingest.parsers.page_layout import pages_elements
from ingest.parsers.pdf_pages import read_page_texts
from ingest.parsers.unstructured_setup import prepare_unstructured

if TYPE_CHECKING:
    import pikepdf

logger = logging.getLogger(__name__)

# A page whose text layer holds less than this is treated as scanned: a stamped
# page number or file reference on top of a scan must not hide the scan.
_MIN_TEXT_CHARS = 20


def _open(path: Path) -> pikepdf.Pdf:
    """Open the PDF once to reject encrypted and damaged files with a clear reason.

    qpdf (through pikepdf) rather than pypdf: pypdf refuses valid large files on
    safety limits meant for hostile ones (an array of over 100,000 elements, which
    a page with many links or a big font's width table reaches), and qpdf reads
    objects lazily, so a large file costs little here.
    """
    import pikepdf

    try:
        # An "encrypted" PDF with an empty user password opens freely, as in a viewer.
        pdf = pikepdf.open(path)
    except pikepdf.PasswordError as exc:
        raise ParseError("The PDF is password-protected. Upload a copy without a password.") from exc
    except (pikepdf.PdfError, ValueError, OSError) as exc:
        raise ParseError(f"The PDF is damaged and could not be read ({exc}).") from exc
    try:
        len(pdf.pages)  # reads the page tree: a broken one fails here, not later
    except (pikepdf.PdfError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        pdf.close()
        raise ParseError(f"The PDF is damaged and could not be read ({exc}).") from exc
    return pdf


def _page_dpi(pdf: pikepdf.Pdf, page: int) -> int:
    try:
        x0, y0, x1, y1 = (float(v) for v in pdf.pages[page - 1].cropbox)
        return ocr.dpi_for(abs(x1 - x0) / 72, abs(y1 - y0) / 72)
    except Exception:  # a broken box: pdftoppm falls back to the page's media box
        return ocr.OCR_DPI


class PdfParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"pdf"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        with _open(path) as pdf:
            pages = len(pdf.pages)
            check_page_count(pages)
            engine = settings.INGEST_PDF_ENGINE
            if engine == "unstructured":
                by_page = self._unstructured(path)
                scanned = [n for n in range(1, pages + 1) if sum(len(e.text) for e in by_page[n]) < _MIN_TEXT_CHARS]
            else:
                read = read_page_texts(
                    path,
                    pages,
                    engine=engine,
                    workers=settings.INGEST_PDF_WORKERS or None,
                    per_process=settings.INGEST_PDF_PAGES_PER_PROCESS,
                    memory_bytes=settings.INGEST_PDF_PROCESS_MAX_BYTES,
                    progress=report_progress,
                )
                by_page = defaultdict(list)
                for element in pages_elements(read.texts):
                    by_page[element.page or 1].append(element)
                # A page with neither text nor image (blank, a page number alone) is not OCR'd.
                scanned = [
                    n
                    for n in range(1, pages + 1)
                    if sum(len(e.text) for e in by_page[n]) < _MIN_TEXT_CHARS and read.may_hold_an_image(n)
                ]
            if scanned:
                self._ocr(path, pdf, scanned, by_page)
        elements = [element for n in sorted(by_page) for element in by_page[n]]
        if not any(e.text.strip() for e in elements):
            raise ParseError("The PDF has no text: neither a text layer nor anything OCR could read.")
        return ParsedDocument(elements=elements, pages=pages)

    def _unstructured(self, path: Path) -> defaultdict[int, list[Element]]:
        """unstructured's ``fast`` strategy (pdfminer): slower, one core; kept as a choice."""
        prepare_unstructured()
        from pypdf.errors import LimitReachedError
        from unstructured.partition.pdf import partition_pdf

        try:
            raw = partition_pdf(filename=str(path), strategy="fast", languages=[ocr.LANGUAGE])
        except LimitReachedError:
            raise  # reported with what an admin can do (``parse_file``)
        except Exception as exc:
            raise ParseError(f"The PDF could not be parsed ({type(exc).__name__}: {exc}).") from exc
        by_page: defaultdict[int, list[Element]] = defaultdict(list)
        for element in convert_elements(raw):
            by_page[element.page or 1].append(element)
        return by_page

    def _ocr(self, path: Path, pdf: pikepdf.Pdf, scanned: list[int], by_page: dict[int, list[Element]]) -> None:
        """Replace the elements of ``scanned`` pages with what OCR reads on them."""
        try:
            ocr.require_ocr()
        except ParseError:
            if any(by_page.values()):
                # The typed pages are still worth having; the reason is in the log.
                logger.warning("%s: %d page(s) without text left out: tesseract is missing", path.name, len(scanned))
                return
            raise

        # pikepdf objects are not to be shared between threads: page sizes are read
        # here, before the threads start.
        dpis = {page: _page_dpi(pdf, page) for page in scanned}

        def read(page: int) -> str:
            image = ocr.render_pdf_page(path, page, dpi=dpis[page])
            return ocr.ocr_image(image, what=f"page {page}")

        # Only the child processes run side by side; unstructured classifies the text
        # here, in this thread, as it is not known to be thread-safe.
        for page, text in zip(scanned, ocr.in_parallel(read, scanned), strict=True):
            found = ocr.text_elements(text, page=page)
            if sum(len(e.text) for e in found) > sum(len(e.text) for e in by_page[page]):
                by_page[page] = found
