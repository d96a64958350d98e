"""The text of every page of a PDF, read side by side in child processes.

A PDF is cut into page ranges; each range is read by a child process
(``pdf_pages_child``) with its address space capped, and up to one child per core
runs at a time. Pages come back as they are read, so a 2,000-page file is held as
text only (a few MB), progress is reported per page, and a stuck or oversized page
costs one child, never the worker. If the caller is interrupted (Celery's time limit
arrives as an exception), every child is killed on the way out.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.parsers.base import ParseError

_CHILD = Path(__file__).with_name("pdf_pages_child.py")

Progress = Callable[[int, int], None]


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    first: int
    last: int
    buffer: bytes = b""
    pages: dict[int, str] = field(default_factory=dict)
    images: dict[int, int] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class PageTexts:
    """Every page's text layer, and, where the engine counted them, its images."""

    texts: dict[int, str]
    images: dict[int, int]

    def may_hold_an_image(self, page: int) -> bool:
        """False only where the engine counted no image on the page: OCR would find nothing."""
        return self.images.get(page, 1) > 0


def page_ranges(pages: int, *, workers: int, per_process: int) -> list[tuple[int, int]]:
    """1-based inclusive ranges: at least one per worker for a large file, none over ``per_process`` pages."""
    if pages <= 0:
        return []
    size = max(1, min(per_process, -(-pages // max(1, workers))))
    return [(first, min(pages, first + size - 1)) for first in range(1, pages + 1, size)]


def _start(path: Path, first: int, last: int, *, engine: str, memory_bytes: int) -> _Child:
    environment = {**os.environ, "ASSISTANT_PDF_CHILD_MAX_BYTES": str(memory_bytes), "OMP_THREAD_LIMIT": "1"}
    process = subprocess.Popen(  # noqa: S603 - our own module, run by this interpreter
        [sys.executable, str(_CHILD), str(path), str(first), str(last), engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    return _Child(process, first, last)


def _take_lines(child: _Child, data: bytes) -> int:
    """Parse the complete JSON lines in the child's buffer; returns how many pages arrived."""
    child.buffer += data
    *lines, child.buffer = child.buffer.split(b"\n")
    arrived = 0
    for line in lines:
        if not line.strip():
            continue
        message = json.loads(line)
        if "error" in message:
            child.error = f"{message['error']}: {message.get('detail', '')}".strip(": ")
        else:
            child.pages[int(message["page"])] = str(message["text"])
            if message.get("images") is not None:
                child.images[int(message["page"])] = int(message["images"])
            arrived += 1
    return arrived


def read_page_texts(
    path: Path,
    pages: int,
    *,
    engine: str = "pdfium",
    workers: int | None = None,
    per_process: int = 250,
    memory_bytes: int = 1024**3,
    progress: Progress | None = None,
) -> PageTexts:
    """The text of pages 1..``pages`` of ``path``, read by ``engine`` (pdfium or poppler).

    Raises ``ParseError`` naming the pages that could not be read, with the reason.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    todo = page_ranges(pages, workers=workers, per_process=per_process)
    todo.reverse()  # popped from the end: first pages first
    running: dict[int, _Child] = {}
    texts: dict[int, str] = {}
    images: dict[int, int] = {}
    failures: list[str] = []
    selector = selectors.DefaultSelector()
    try:
        while todo or running:
            while todo and len(running) < workers:
                first, last = todo.pop()
                child = _start(path, first, last, engine=engine, memory_bytes=memory_bytes)
                fd = child.process.stdout.fileno()  # type: ignore[union-attr]  # stdout=PIPE
                os.set_blocking(fd, False)
                running[fd] = child
                selector.register(fd, selectors.EVENT_READ)
            for key, _ in selector.select(timeout=1.0):
                fd = int(key.fd)
                child = running[fd]
                data = os.read(fd, 1 << 20)
                if data:
                    if _take_lines(child, data) and progress is not None:
                        progress(len(texts) + sum(len(c.pages) for c in running.values()), pages)
                    continue
                # End of output: the child is done (or died).
                selector.unregister(fd)
                del running[fd]
                code = child.process.wait()
                texts.update(child.pages)
                images.update(child.images)
                missing = [n for n in range(child.first, child.last + 1) if n not in child.pages]
                if missing:
                    reason = child.error or _exit_reason(code)
                    failures.append(f"pages {missing[0]}-{missing[-1]}: {reason}")
    finally:
        for child in running.values():
            child.process.kill()
            child.process.wait()
        selector.close()
    if failures:
        raise ParseError(f"The PDF could not be read ({'; '.join(failures)}).")
    return PageTexts(texts, images)


def _exit_reason(code: int) -> str:
    if code < 0:
        return f"the reader was stopped by signal {-code} (out of memory or killed)"
    return f"the reader ended with status {code}"
