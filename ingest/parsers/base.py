"""The interface every parser implements, and the errors a parse may end with."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar, Literal, Protocol

ElementKind = Literal["title", "text", "list", "table"]


@dataclass(frozen=True)
class Element:
    """One structural piece of a document, in reading order.

    ``page`` is the page, slide or sheet number (1-based) where the format has them.
    For a table row, ``table_header`` holds the table's header row so that every
    chunk of a long table can repeat it.
    """

    text: str
    kind: ElementKind = "text"
    page: int | None = None
    table_header: str = ""


@dataclass(frozen=True)
class Attachment:
    """A file found inside another (an e-mail attachment, an archive member).

    Each becomes a document of its own, linked to the one it came from. Its bytes
    are ``content``, or, for a file that may be large (an archive member), come from
    ``opener`` when the file is stored, a block at a time, never held whole.
    """

    name: str
    content: bytes = b""
    opener: Callable[[], AbstractContextManager[IO[bytes]]] | None = field(default=None, compare=False)

    def open(self) -> AbstractContextManager[IO[bytes]]:
        if self.opener is not None:
            return self.opener()
        return nullcontext(io.BytesIO(self.content))


@dataclass
class ParsedDocument:
    elements: list[Element] = field(default_factory=list)
    pages: int | None = None
    attachments: list[Attachment] = field(default_factory=list)


class ParseError(Exception):
    """A file that cannot be turned into text. The message is shown to people as is."""


class Parser(Protocol):
    #: Detected file types (``ingest.parsers.detect.FileKind`` values) this parser reads.
    file_types: ClassVar[frozenset[str]]

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument: ...


# Progress of the parse under way, for a parser that can tell (pages read of pages).
_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("parse_progress", default=None)


@contextmanager
def progress_reported_to(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Send ``report_progress`` calls made while parsing to ``callback(done, total)``."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def report_progress(done: int, total: int) -> None:
    """Tell whoever parses (``progress_reported_to``) how far a long parse is."""
    callback = _progress.get()
    if callback is not None:
        callback(done, total)
