"""Spreadsheets (XLSX) and delimited text (CSV, TSV), read as tables row by row.

Read directly with openpyxl and the csv module rather than through unstructured,
which renders a whole sheet as one HTML table first: streaming rows keeps a
100,000-row sheet linear in time and modest in memory. Every sheet is a page, so
a citation names the sheet.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ingest.parsers.base import Element, ParsedDocument, ParseError
from ingest.parsers.limits import check_page_count
from ingest.parsers.tables import cell_text, looks_like_header, table_elements

_SNIFF_CHARS = 64 * 1024


class _TableReader:
    """Rows of one sheet into elements, table by table.

    Sheets are laid out for people: blank rows separate tables, and a one-cell row
    above a table ("Financial performance") is its caption, which becomes a title
    for the chunks below it. A blank row inside a table (rows after it still look
    like data, not like a new header) keeps the table's header.
    """

    def __init__(self, *, page: int | None) -> None:
        self.page = page
        self.elements: list[Element] = []
        self.header: list[str] | None = None
        self.block: list[list[str]] = []

    def read(self, rows: Iterable[Sequence[Any]]) -> list[Element]:
        for values in rows:
            cells = [cell_text(value) for value in values]
            if any(cells):
                self.block.append(cells)
            elif self.block:
                self._close_block()
        self._close_block()
        return self.elements

    def _close_block(self) -> None:
        block, self.block = self.block, []
        captioned = False
        while len(block) > 1 and sum(1 for cell in block[0] if cell) == 1:
            caption = next(cell for cell in block.pop(0) if cell)
            self.elements.append(Element(text=caption, kind="title", page=self.page))
            captioned = True
        if not block:
            return
        if self.header is not None and not captioned and not looks_like_header(block[0]):
            block = [self.header, *block]
        else:
            self.header = block[0] if looks_like_header(block[0]) else None
        self.elements.extend(table_elements(block, page=self.page))


class XlsxParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"xlsx"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        from openpyxl import load_workbook

        try:
            # read_only streams rows from the XML; data_only gives the values the
            # formulas last computed, which are what a reader of the sheet sees.
            # A file object, not the path: openpyxl refuses paths without an .xlsx
            # suffix, and stored uploads have opaque names (the type was detected
            # from the content).
            workbook = load_workbook(io.BytesIO(path.read_bytes()), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises zip, XML, key and value errors alike
            raise ParseError(f"The XLSX file could not be read; it may be damaged ({type(exc).__name__}).") from exc
        try:
            check_page_count(len(workbook.sheetnames), unit="sheets")
            elements: list[Element] = []
            for sheet in workbook.worksheets:
                page = workbook.sheetnames.index(sheet.title) + 1
                # The declared dimensions can be wrong (or 16,384 columns wide after
                # formatting a whole row): read what is stored instead.
                sheet.reset_dimensions()
                rows = _TableReader(page=page).read(sheet.iter_rows(values_only=True))
                if rows:
                    if rows[0].text != sheet.title:
                        elements.append(Element(text=sheet.title, kind="title", page=page))
                    elements.extend(rows)
        except ParseError:
            raise
        except Exception as exc:
            raise ParseError(f"The XLSX file could not be read; it may be damaged ({type(exc).__name__}).") from exc
        finally:
            workbook.close()
        return ParsedDocument(elements=elements, pages=len(workbook.sheetnames))


class DelimitedTextParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"csv", "tsv"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        from unstructured.file_utils.encoding import detect_file_encoding

        try:
            _, text = detect_file_encoding(filename=str(path))
        except Exception as exc:
            raise ParseError(f"The {file_type.upper()} file's text encoding could not be recognised.") from exc
        if file_type == "tsv":
            dialect: type[csv.Dialect] = csv.excel_tab
        else:
            try:
                dialect = csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel  # too regular or too odd to tell: the common case
        try:
            elements = _TableReader(page=None).read(csv.reader(io.StringIO(text), dialect))
        except csv.Error as exc:
            raise ParseError(f"The {file_type.upper()} file could not be read ({exc}).") from exc
        return ParsedDocument(elements=elements, pages=None)
