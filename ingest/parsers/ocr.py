"""OCR with Debian's tesseract, for scanned PDF pages and images.

tesseract and poppler's pdftoppm are run directly: page images go through pipes,
never through temporary files, and every call has a time limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ingest.parsers.base import Element, ParseError
from ingest.parsers.elements import convert_elements
from ingest.parsers.unstructured_setup import prepare_unstructured

LANGUAGE = "eng"
# tesseract reads best at about 300 dpi; text scanned or rendered smaller is upscaled.
OCR_DPI = 300
# A page of absurd size (a poster, a hostile MediaBox) is rendered at a lower
# resolution rather than as a multi-gigabyte image.
MAX_PIXELS = 50_000_000
_TIMEOUT_S = 300
_MAX_WORKERS = 4
# "docu-\nment" at a line end is one word that the scan broke in two.
_HYPHENATED = re.compile(r"(\w)-\n(?=[a-z])")

T = TypeVar("T")
R = TypeVar("R")


def _tool(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise ParseError(
            f"This file needs OCR, but '{command}' is not installed on the server "
            f"(Debian package {package}; see .ci/system-packages.sh)."
        )
    return path


def require_ocr() -> None:
    """Fail early, with the reason, when OCR cannot run here."""
    _tool("tesseract", "tesseract-ocr")


def _run(arguments: list[str], *, stdin: bytes | None, what: str) -> bytes:
    # tesseract's OpenMP threads fight each other on small machines (a page took 10 s
    # with them and 1.5 s without on 2 cores); pages are OCR'd side by side instead.
    # Only the child gets the limit: torch in this process reads the same variable.
    environment = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        result = subprocess.run(  # noqa: S603 - the command is a resolved tool path
            arguments, input=stdin, capture_output=True, timeout=_TIMEOUT_S, env=environment, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseError(f"OCR gave up: {what} took longer than {_TIMEOUT_S} seconds.") from exc
    if result.returncode != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no details"]
        raise ParseError(f"OCR failed on {what} ({detail[0]}).")
    return result.stdout


def ocr_image(image: bytes, *, what: str) -> str:
    """The text tesseract reads in one encoded image (PNG, PGM, TIFF...)."""
    tesseract = _tool("tesseract", "tesseract-ocr")
    return _run([tesseract, "stdin", "stdout", "-l", LANGUAGE], stdin=image, what=what).decode("utf-8", "replace")


def render_pdf_page(path: Path, page: int, *, dpi: int) -> bytes:
    """One PDF page as a greyscale PGM image."""
    pdftoppm = _tool("pdftoppm", "poppler-utils")
    arguments = [pdftoppm, "-r", str(dpi), "-gray", "-f", str(page), "-l", str(page), str(path)]
    return _run(arguments, stdin=None, what=f"page {page}")


def dpi_for(width_in: float, height_in: float) -> int:
    """OCR_DPI, or less for a page so large that it would not fit in ``MAX_PIXELS``."""
    area = max(width_in * height_in, 1e-6)
    return max(1, min(OCR_DPI, int((MAX_PIXELS / area) ** 0.5)))


def text_elements(text: str, *, page: int) -> list[Element]:
    """OCR'd text as elements, classified (titles, lists, prose) like any plain text."""
    text = _HYPHENATED.sub(r"\1", text).replace("\f", "\n")
    if not text.strip():
        return []
    prepare_unstructured()
    from unstructured.partition.text import partition_text

    return convert_elements(partition_text(text=text, languages=[LANGUAGE]), page=page)


def in_parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``function`` over ``items`` on a few threads, results in order.

    The work happens in child processes (pdftoppm, tesseract), so threads suffice.
    """
    workers = max(1, min(len(items), os.cpu_count() or 1, _MAX_WORKERS))
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))
