"""Structure-aware chunking sized for the embedding model's window.

Titles open a new section; a chunk never spans two sections or two pages, carries
its section heading, and keeps the page it came from, so that a citation names the
exact page a passage is on. A chunk holds at most ``max_tokens`` tokens as the embedding model
counts them; one over-long element (a huge paragraph, a table row) is split on sentence
and then word boundaries.

Table rows carry their table's header row (``Element.table_header``): every chunk
that holds rows of a table starts them with the header, counted in its budget, so
that a chunk from the middle of a long table still says what its columns are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ingest.parsers.base import Element

TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


HEADING_SEPARATOR = " \u203a "  # a single right-pointing angle quotation mark


def indexed_text(*, context: str, heading: str, text: str) -> str:
    """What is embedded and indexed lexically: the document's context, the section heading, the text.

    A passage's own words often lack what it is about ("the results show it halves the
    risk", a table row that never names its company): the document's context line
    (``ingest.context``) and the heading give it that. Each is left out where it would
    only repeat what follows (a context that opens the heading, a heading the text opens with).
    """
    lines = []
    if context and not heading.startswith(context) and not text.startswith(context):
        lines.append(context)
    if heading and not text.startswith(heading) and not text.startswith("\n".join(heading.split(HEADING_SEPARATOR))):
        lines.append(heading)
    lines.append(text)
    return "\n".join(lines)


def document_title(elements: Iterable[Element], *, name: str) -> str:
    """The first title the parser found, else the file name without its extension."""
    for element in elements:
        if element.kind == "title" and element.text.strip():
            return element.text.strip()[:500]
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    return " ".join(re.sub(r"[_\-]+", " ", stem).split())[:500]


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    heading: str
    page_start: int | None
    page_end: int | None
    context: str = ""

    @property
    def embedding_text(self) -> str:
        return indexed_text(context=self.context, heading=self.heading, text=self.text)


def approximate_token_count(text: str) -> int:
    """A tokenizer-free estimate (word pieces run ~1.3 per English word)."""
    return int(len(text.split()) * 1.3) + 1


def _split_long(text: str, max_tokens: int, count: TokenCounter) -> Iterator[str]:
    """Split text that alone exceeds ``max_tokens``: by sentence, then by words."""
    # Word-piece tokenizers split on whitespace first, so the count of pieces joined
    # by spaces is the sum of their counts: each sentence is counted once.
    pieces: list[tuple[str, int]] = []
    for sentence in _SENTENCE_END.split(text):
        size = count(sentence)
        if size <= max_tokens:
            pieces.append((sentence, size))
            continue
        words = sentence.split()
        step = max(1, int(max_tokens / 1.5))
        while words:
            # Shrink until the window fits; word pieces per word vary a lot.
            take = min(step, len(words))
            size = count(" ".join(words[:take]))
            while take > 1 and size > max_tokens:
                take = max(1, take * 3 // 4)
                size = count(" ".join(words[:take]))
            pieces.append((" ".join(words[:take]), size))
            words = words[take:]
    current: list[str] = []
    used = 0
    for piece, size in pieces:
        if current and used + size > max_tokens:
            yield " ".join(current)
            current, used = [], 0
        current.append(piece)
        used += size
    if current:
        yield " ".join(current)


def chunk_elements(
    elements: Iterable[Element],
    *,
    max_tokens: int,
    count_tokens: TokenCounter = approximate_token_count,
    context: str = "",
) -> list[ChunkDraft]:
    """Group parsed elements into chunks of at most ``max_tokens`` tokens.

    ``context`` (the document's, see ``ingest.context``) is embedded with every chunk,
    as is its section heading: both are counted in each chunk's budget, so that what
    is embedded still fits the model's window. Consecutive titles ("3M Company",
    "Consolidated Statement of Cash Flows") make one heading, joined by ``HEADING_SEPARATOR``.
    """
    chunks: list[ChunkDraft] = []
    heading = ""
    parts: list[str] = []
    pages: list[int] = []
    used = 0
    has_body = False
    context = context.strip()[:500]
    title_size = count_tokens(context) if context else 0
    # The title and heading are embedded with every chunk of a section: leave room for them.
    budget = max(32, max_tokens - title_size)
    # The table header the current chunk has already written, if any.
    chunk_header = ""
    # The header of the previous element, to tell where a new table starts.
    previous_header = ""
    header_sizes: dict[str, int] = {}  # counted once per table, not once per row

    def flush() -> None:
        nonlocal parts, pages, used, has_body, chunk_header
        text = "\n".join(parts).strip()
        if text:
            chunks.append(
                ChunkDraft(
                    text=text,
                    heading=heading,
                    page_start=min(pages) if pages else None,
                    page_end=max(pages) if pages else None,
                    context=context,
                )
            )
        parts, pages, used, has_body, chunk_header = [], [], 0, False, ""

    def add(text: str, page: int | None, size: int) -> None:
        nonlocal used
        parts.append(text)
        used += size
        if page is not None:
            pages.append(page)

    def add_body(text: str, page: int | None, header: str) -> None:
        """Add ``text`` to the chunk, under ``header`` if it is a table row."""
        nonlocal has_body, chunk_header
        header_size = header_sizes[header] if header else 0
        room = budget - header_size
        size = count_tokens(text)
        pieces = list(_split_long(text, room, count_tokens)) if size > room else [text]
        for piece in pieces:
            piece_size = size if len(pieces) == 1 else count_tokens(piece)
            header_cost = header_size if header != chunk_header else 0
            if has_body and used + header_cost + piece_size > budget:
                flush()
            if header and header != chunk_header:
                add(header, page, header_size)
            chunk_header = header
            add(piece, page, piece_size)
            has_body = True

    for element in elements:
        text = element.text.strip()
        if not text:
            continue
        if pages and element.page is not None and element.page != pages[-1]:
            # A new page: a citation must be able to name one page, so start over.
            # The heading carries on: the section continues on the next page.
            flush()
        header = element.table_header.strip()
        new_table = header != previous_header
        previous_header = header
        if element.kind == "title":
            # Consecutive titles ("Chapter 2", "Methods") stay together with the text
            # that follows them instead of becoming chunks of their own.
            if has_body:
                flush()
            # Titles with no text between them are one heading; a title after text starts a new one.
            heading = f"{heading}{HEADING_SEPARATOR}{text}" if parts and heading else text
            while HEADING_SEPARATOR in heading and count_tokens(heading) > max_tokens // 4:
                heading = heading.split(HEADING_SEPARATOR, 1)[1]  # the nearest titles matter most
            heading = heading[:500]
            # A heading that opens with the context is embedded alone (see ``indexed_text``).
            heading_size = 0 if heading == context else count_tokens(heading)
            budget = max(32, max_tokens - title_size - heading_size)
            add(text, element.page, count_tokens(text))
            continue
        if header and header not in header_sizes:
            header_sizes[header] = count_tokens(header)
        if header and header_sizes[header] > budget // 2:
            # A header this long would crowd the rows out of every chunk: it is
            # written once, where its table starts, and not repeated.
            if new_table:
                add_body(header, element.page, "")
            header = ""
        add_body(text, element.page, header)
    flush()
    return chunks
