"""Tables as rows of pipe-separated cells, each row carrying its table's header.

Every table, whatever format it came from (a spreadsheet, a CSV file, a table in a
DOCX, PPTX, HTML or PDF), ends up in the same shape: one ``Element`` per data row,
``| cell | cell |``, with the header row in ``table_header`` so that the chunker can
repeat it at the top of every chunk of a long table. A row read without its header
("| 13 | TOR |") means nothing to the embedding model or to the reader of a citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any

from ingest.parsers.base import Element

_SPACE = re.compile(r"\s+")
# A cell holding an amount, a date, a time or a percentage, as cell_text writes them.
_NUMBER_LIKE = re.compile(r"^[-+(]?[\d.,:/ -]*\d[\d.,:/ -]*\)?%?$")
_YEAR = re.compile(r"^(19|20)\d\d$")
# A hostile colspan="100000" must not become a row of 100,000 cells.
_MAX_SPAN = 100


def cell_text(value: Any) -> str:
    """One cell as a single line, with the pipes it contains escaped."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # spreadsheets store every number as a float: 13.0 is 13
    elif isinstance(value, datetime):
        # A spreadsheet date is a datetime at midnight; "2024-03-01 00:00:00" is noise.
        value = value.date().isoformat() if value.time() == time(0, 0) else value.isoformat(sep=" ")
    elif isinstance(value, date):
        value = value.isoformat()
    return _SPACE.sub(" ", str(value)).strip().replace("|", "\\|")


def format_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table_elements(rows: Sequence[Sequence[str]], *, page: int | None) -> list[Element]:
    """Elements for one table, its first row as the header when it looks like one.

    Empty rows and columns empty in every row (spacers in HTML and spreadsheets) are
    dropped. A one-column table is a list in disguise (often a layout table in a web
    page or an e-mail), so its cells become plain text.
    """
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    used = [i for i in range(width) if any(i < len(row) and row[i] for row in rows)]
    grid = [[row[i] if i < len(row) else "" for i in used] for row in rows]
    if len(used) == 1:
        return [Element(text=row[0], kind="text", page=page) for row in grid]
    if len(grid) == 1 or not looks_like_header(grid[0]):
        return [Element(text=format_row(row), kind="table", page=page) for row in grid]
    header = format_row(grid[0])
    return [Element(text=format_row(row), kind="table", page=page, table_header=header) for row in grid[1:]]


def looks_like_header(row: Sequence[str]) -> bool:
    """Column names, not data: two or more cells and no amounts or dates among them.

    Tables without a header row are common (a layout table, a sheet of raw figures);
    repeating their first data row above every chunk would mislead. Years are
    allowed: "| Region | 2022 | 2023 |" is the classic financial header.
    """
    cells = [cell for cell in row if cell]
    return len(cells) >= 2 and not any(_NUMBER_LIKE.match(cell) and not _YEAR.match(cell) for cell in cells)


def html_table_rows(html: str) -> list[list[str]]:
    """The cells of an HTML table (unstructured's ``text_as_html``), spans filled in.

    A cell spanning several columns or rows is repeated in each, so that every row
    stands alone under the header.
    """
    from lxml import html as lxml_html

    table = lxml_html.fragment_fromstring(html, create_parent="div")
    rows: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows it still spans)
    for tr in table.iter("tr"):
        row: list[str] = []
        for cell in tr.xpath("./th|./td"):
            _take_spanned_cells(row, pending)
            text = cell_text(" ".join(cell.itertext()))
            down = _span(cell.get("rowspan"))
            for _ in range(_span(cell.get("colspan"))):
                if down > 1:
                    pending[len(row)] = (text, down - 1)
                row.append(text)
        _take_spanned_cells(row, pending)
        rows.append(row)
    return rows


def _take_spanned_cells(row: list[str], pending: dict[int, tuple[str, int]]) -> None:
    """Fill the next columns of ``row`` that a cell of a row above spans into."""
    while len(row) in pending:
        text, left = pending.pop(len(row))
        if left > 1:
            pending[len(row)] = (text, left - 1)
        row.append(text)


def _span(value: str | None) -> int:
    try:
        return min(max(int(value or 1), 1), _MAX_SPAN)
    except ValueError:
        return 1
