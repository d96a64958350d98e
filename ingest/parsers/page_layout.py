"""From the plain text of PDF pages to elements: headings, paragraphs and table rows.

A fast text engine (PDFium, poppler) gives each page as lines, in reading order,
with no structure. This module puts the structure back from the lines alone:

* Running headers and footers (a line at the top or bottom of many pages, page
  numbers) are dropped: repeated on every page they would drown the passages.
* A table row is a line that ends in numbers ("Purchases of PP&E (1,577) (1,373)"):
  it stays one line with its label. Where a header line above names the columns by
  period ("(Millions) 2018 2017"), every row carries it (``Element.table_header``) and
  every chunk of the table starts with it, so a row is findable by "PP&E 2018" even
  in a chunk far from the header, and a reader sees which number is which year.
  (Writing the column name before every value was tried: it nearly doubled the
  word pieces of a financial statement, and so the embedding time, for no gain.)
* A short line that does not end a sentence, followed by more text, is a heading.
* Other lines are joined into paragraphs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ingest.parsers.base import Element

# A value in a table cell: 1,577  (1,373)  $5,363  12.5%  —
_DASHES = "\u2014\u2013\u2212-"  # em dash, en dash, minus sign, hyphen
_NUMBER = re.compile(rf"^[({_DASHES}]?\$?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?%?\)?%?$|^[{_DASHES}]{{1,2}}$")
_YEAR = re.compile(r"^\(?(?:FY|fiscal\s)?(?:19|20)\d\d\)?,?$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;,]['\")\]]?$")
_BULLET = re.compile(rf"^(?:[\u2022\u25cf\u25aa\u25e6\u00b7*{_DASHES}]|\(?[a-z0-9]{{1,3}}[.)])\s+", re.IGNORECASE)
_WORDS = re.compile(r"[A-Za-z]{2,}")

# Running lines: seen in the first or last few lines of at least this share of pages.
_EDGE_LINES = 3
_RUNNING_SHARE = 0.3
_HEADING_MAX_WORDS = 12
_HEADING_MAX_CHARS = 120


def _key(line: str) -> str:
    """A running line's identity: its words, numbers (page numbers) masked."""
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def running_lines(pages: Mapping[int, Sequence[str]]) -> set[str]:
    """The keys of lines that repeat at the top or bottom of many pages."""
    if len(pages) < 4:
        return set()
    seen: Counter[str] = Counter()
    for lines in pages.values():
        present = [line for line in lines if line.strip()]
        if len(present) <= 2 * _EDGE_LINES:
            continue  # a page this short (a slide, a cover) is all edge: it tells nothing
        edges = present[:_EDGE_LINES] + present[-_EDGE_LINES:]
        # Running heads are short: a sentence repeated at the top of pages is content.
        seen.update({_key(line) for line in edges if len(line.split()) <= _HEADING_MAX_WORDS})
    needed = max(3, int(len(pages) * _RUNNING_SHARE))
    return {key for key, count in seen.items() if count >= needed}


def _tokens(line: str) -> list[str]:
    """Whitespace tokens, a lone currency sign joined to the number after it."""
    tokens: list[str] = []
    for token in line.split():
        if tokens and tokens[-1] in {"$", "€", "£", "($", "(€", "(£"}:
            tokens[-1] += token
        else:
            tokens.append(token)
    return tokens


def _is_number(token: str) -> bool:
    return bool(_NUMBER.match(token.replace("$", "").replace("€", "").replace("£", "") or "x"))


@dataclass(frozen=True)
class _Row:
    label: str
    values: list[str]


def _split_row(line: str) -> _Row:
    tokens = _tokens(line)
    end = len(tokens)
    while end > 0 and _is_number(tokens[end - 1]):
        end -= 1
    return _Row(" ".join(tokens[:end]), tokens[end:])


def _is_header(line: str) -> bool:
    """Whether ``line`` names two or more periods (columns) and holds no other number."""
    tokens = line.split()
    if not 2 <= len(tokens) <= 24:
        return False
    if sum(1 for t in tokens if _YEAR.match(t)) < 2:
        return False
    others = [t for t in tokens if not _YEAR.match(t) and any(c.isdigit() for c in t)]
    # Days of a date ("June 30, 2023") are allowed; amounts are not.
    return all(re.fullmatch(r"\d{1,2},?", t) for t in others)


def _is_heading(line: str, following: str | None, *, continuing: bool) -> bool:
    """A short line, not ending a sentence, between a finished sentence and a new one.

    ``continuing``: a paragraph is open (its last line did not end a sentence), so
    this line is more of it.
    """
    words = line.split()
    if continuing or not words or len(words) > _HEADING_MAX_WORDS or len(line) > _HEADING_MAX_CHARS:
        return False
    if following is None or _SENTENCE_END.search(line) or _BULLET.match(line):
        return False
    if not _WORDS.search(line) or not (line[0].isupper() or line[0].isdigit()):
        return False
    return following[:1].isupper() or following[:1].isdigit() or not following[:1].isalpha()


class _PageBuilder:
    def __init__(self, page: int) -> None:
        self.page = page
        self.elements: list[Element] = []
        self.paragraph: list[str] = []
        self.header = ""

    def flush(self) -> None:
        if self.paragraph:
            self.elements.append(Element(text=" ".join(self.paragraph), kind="text", page=self.page))
            self.paragraph = []

    def end_table(self) -> None:
        self.header = ""

    def add_heading(self, line: str) -> None:
        self.flush()
        self.end_table()
        self.elements.append(Element(text=line, kind="title", page=self.page))

    def add_header(self, line: str) -> None:
        self.flush()
        self.header = line

    def add_row(self, row: _Row) -> None:
        self.flush()
        if not row.label and self.elements and self.elements[-1].kind == "table" and not _has_values(self.elements[-1]):
            # Values on a line of their own below a label that wrapped.
            row = _Row(self.elements.pop().text, row.values)
        text = " ".join([row.label, *row.values]).strip()
        self.elements.append(Element(text=text, kind="table", page=self.page, table_header=self.header))

    def add_table_label(self, line: str) -> None:
        self.flush()
        self.elements.append(Element(text=line, kind="table", page=self.page, table_header=self.header))

    def add_text(self, line: str) -> None:
        if self.header and len(line.split()) >= _HEADING_MAX_WORDS:
            self.end_table()  # prose after a table ends it
        if _BULLET.match(line) and self.paragraph:
            self.flush()
        self.paragraph.append(line)
        if _SENTENCE_END.search(line) and not line.endswith(","):
            self.flush()


def _has_values(element: Element) -> bool:
    return bool(_split_row(element.text).values)


def page_elements(lines: Sequence[str], *, page: int, running: set[str] = frozenset()) -> list[Element]:  # type: ignore[assignment]
    """The elements of one page, from its lines in reading order."""
    kept = [" ".join(line.split()) for line in lines if line.strip() and _key(line) not in running]
    builder = _PageBuilder(page)
    for position, line in enumerate(kept):
        following = kept[position + 1] if position + 1 < len(kept) else None
        if _is_header(line):
            builder.add_header(line)
            continue
        row = _split_row(line)
        if row.values and (not row.label or len(row.label.split()) <= 20):
            builder.add_row(row)
            continue
        if builder.header and len(line.split()) <= _HEADING_MAX_WORDS and not _SENTENCE_END.search(line):
            builder.add_table_label(line)  # "Cash Flows from Investing Activities", inside the table
            continue
        if _is_heading(line, following, continuing=bool(builder.paragraph)):
            builder.add_heading(line)
            continue
        builder.add_text(line)
    builder.flush()
    return builder.elements


def pages_elements(texts: Mapping[int, str]) -> list[Element]:
    """Every page's elements, in page order, running headers and footers left out."""
    pages = {number: text.splitlines() for number, text in texts.items()}
    running = running_lines(pages)
    elements: list[Element] = []
    for number in sorted(pages):
        elements.extend(page_elements(pages[number], page=number, running=running))
    return elements
