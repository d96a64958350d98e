"""Parsers sit behind one small interface; the registry picks one by detected type.

The type comes from the file's content (``detect.detect_file_type``), never from the
name an uploader gave it: a PDF renamed ``.docx`` is parsed as a PDF.
"""

from __future__ import annotations

from pathlib import Path

from ingest.parsers.archive import ZipParser
from ingest.parsers.base import Attachment, Element, ParsedDocument, ParseError, Parser
from ingest.parsers.detect import detect_file_type
from ingest.parsers.images import ImageParser
from ingest.parsers.limits import check_page_count
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


def parse_file(path: Path, *, name: str = "") -> tuple[str, ParsedDocument]:
    """Detect ``path``'s type from its content and parse it. Returns (type, result)."""
    file_type = detect_file_type(path, name=name)
    parsed = parser_for(file_type).parse(path, file_type=file_type)
    # Paged formats other than PDF (slides, DOCX pages) are only counted after parsing.
    if parsed.pages:
        check_page_count(parsed.pages)
    # A container (an archive, an e-mail with only attachments) may have no text of
    # its own: its attachments become documents.
    if not parsed.attachments and not any(e.text.strip() for e in parsed.elements):
        raise ParseError("No text could be extracted from this file.")
    return file_type, parsed


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
