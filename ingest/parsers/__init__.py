"""Parsers sit behind one small interface; the registry picks one by detected type.

The type comes from the file's content (``detect.detect_file_type``), never from the
name an uploader gave it: a PDF renamed ``.docx`` is parsed as a PDF.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ingest.parsers.archive import ZipParser
from ingest.parsers.base import Attachment, Element, ParsedDocument, ParseError, Parser
from ingest.parsers.detect import detect_file_type
from ingest.parsers.images import ImageParser
from ingest.parsers.limits import ZIP_PACKAGES, check_nesting, check_page_count, check_zip_package
from ingest.parsers.mail import EmlParser, MsgParser
from ingest.parsers.office import UnstructuredParser
from ingest.parsers.pandoc import PandocParser
from ingest.parsers.pdf import PdfParser
from ingest.parsers.spreadsheets import DelimitedTextParser, XlsxParser
from ingest.parsers.text import PlainTextParser

PARSERS: tuple[Parser, ...] = (
    PdfParser(),
    ImageParser(),
    XlsxParser(),
    DelimitedTextParser(),
    EmlParser(),
    MsgParser(),
    PandocParser(),
    ZipParser(),
    PlainTextParser(),
    UnstructuredParser(),
)


def parser_for(file_type: str) -> Parser:
    for parser in PARSERS:
        if file_type in parser.file_types:
            return parser
    raise ParseError(f"Files of type '{file_type}' are not supported.")


def parse_file(path: Path, *, name: str = "", depth: int = 0) -> tuple[str, ParsedDocument]:
    """Detect ``path``'s type from its content and parse it. Returns (type, result).

    ``depth``: how many files (archives, e-mails) this one was found inside.
    A reason given in ``ParseError`` never names the file's place on the server's
    disk (libraries quote the path they were handed): people see it in the portal.
    """
    try:
        return _parse(path, name=name, depth=depth)
    except ParseError as exc:
        message = str(exc)
        shown = message.replace(f"{path}: ", "").replace(str(path), name or "the file")
        if shown == message:
            raise
        raise ParseError(shown) from exc


def _parse(path: Path, *, name: str, depth: int) -> tuple[str, ParsedDocument]:
    file_type = detect_file_type(path, name=name)
    parser = parser_for(file_type)
    if file_type in ZIP_PACKAGES:
        # Their parsers unpack every part in memory, trusting the sizes it declares.
        check_zip_package(path, file_type=file_type)
    try:
        parsed = parser.parse(path, file_type=file_type)
    except ParseError:
        raise
    except Exception as exc:
        reason = _library_limit(exc, file_type=file_type)
        if reason is None:
            raise
        raise ParseError(reason) from exc
    if parsed.attachments:
        check_nesting(depth)
    # Paged formats other than PDF (slides, DOCX pages) are only counted after parsing.
    if parsed.pages:
        check_page_count(parsed.pages)
    # A container (an archive, an e-mail with only attachments) may have no text of
    # its own: its attachments become documents.
    if not parsed.attachments and not any(e.text.strip() for e in parsed.elements):
        raise ParseError("No text could be extracted from this file.")
    return file_type, parsed


def _library_limit(exc: Exception, *, file_type: str) -> str | None:
    """The reason to show for a safety limit of a library a parser uses, if ``exc`` is one.

    The libraries stop reading a file that looks hostile (pypdf past 100,000
    elements in one array, for one). This product has no setting for those limits,
    so the reason says what an administrator can do instead.
    """
    errors = sys.modules.get("pypdf.errors")  # only pypdf's own code can have raised it
    if errors is not None and isinstance(exc, errors.LimitReachedError):
        return (
            f"The {file_type.upper()} file goes beyond a safety limit of the PDF library pypdf ({exc}), a limit "
            "meant to stop hostile files that has no setting here. An administrator can upload a copy re-saved by "
            "another PDF tool (for example printed to PDF), or report the file to the maintainers."
        )
    return None


__all__ = [
    "Attachment",
    "Element",
    "ParseError",
    "ParsedDocument",
    "Parser",
    "detect_file_type",
    "parse_file",
    "parser_for",
]
