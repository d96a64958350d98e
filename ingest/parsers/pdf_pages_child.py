"""A child process that reads the text of a range of a PDF's pages with PDFium.

Run as ``python -m ingest.parsers.pdf_pages_child PATH FIRST LAST [ENGINE]``. It
prints one JSON line per page, ``{"page": N, "text": "...", "images": K}`` (or ``"error"``), as
soon as the page is read, so that the parent sees progress per page and never
holds more than its own pages. PDFium is not thread-safe: page ranges are read
side by side in processes of their own (``pdf_pages.read_page_texts``).

Nothing but the standard library and the engine is imported: no Django, no torch.
The parent caps this process's address space (``RLIMIT_AS``) before it starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator


def pdfium_pages(path: str, first: int, last: int) -> Iterator[tuple[int, str, int | None]]:
    """(page, text, images) for pages ``first``..``last`` (1-based), text in PDFium's reading order.

    ``images``: how many image objects the page draws. A page without text and without
    an image (a blank page, a page number alone) has nothing for OCR to read.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pdf = pdfium.PdfDocument(path)
    try:
        for number in range(first, last + 1):
            page = pdf[number - 1]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()
                finally:
                    textpage.close()
                images = None
                if len(text.strip()) < 100:  # only where OCR may be wanted: counting costs
                    images = sum(1 for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
            finally:
                page.close()
            yield number, text, images
    finally:
        pdf.close()


def poppler_pages(path: str, first: int, last: int) -> Iterator[tuple[int, str, int | None]]:
    """(page, text, None) from poppler's ``pdftotext -layout``: columns kept apart by spaces."""
    tool = shutil.which("pdftotext")
    if tool is None:
        raise RuntimeError("pdftotext (Debian package poppler-utils) is not installed")
    # One run for the range: pdftotext ends every page with a form feed.
    result = subprocess.run(  # noqa: S603 - a resolved tool path, no shell
        [tool, "-layout", "-enc", "UTF-8", "-f", str(first), "-l", str(last), path, "-"],
        capture_output=True,
        check=False,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode("utf-8", "replace").strip() or f"pdftotext exit {result.returncode}")
    pages = result.stdout.decode("utf-8", "replace").split("\f")
    for offset, number in enumerate(range(first, last + 1)):
        yield number, pages[offset] if offset < len(pages) else "", None


ENGINES = {"pdfium": pdfium_pages, "poppler": poppler_pages}


def _cap_memory() -> None:
    """Cap this process's address space, so one hostile page fails its range, not the machine."""
    limit = int(os.environ.get("ASSISTANT_PDF_CHILD_MAX_BYTES", "0") or 0)
    if limit > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    _cap_memory()
    path, first, last = argv[0], int(argv[1]), int(argv[2])
    engine = ENGINES[argv[3] if len(argv) > 3 else "pdfium"]
    out = sys.stdout
    try:
        for number, text, images in engine(path, first, last):
            out.write(json.dumps({"page": number, "text": text, "images": images}) + "\n")
            out.flush()
    except MemoryError:
        out.write(json.dumps({"error": "memory", "detail": "the page needs more memory than a parser may use"}) + "\n")
        return 3
    except Exception as exc:  # reported to the parent, which fails the file with the reason
        out.write(json.dumps({"error": type(exc).__name__, "detail": str(exc)[:500]}) + "\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
