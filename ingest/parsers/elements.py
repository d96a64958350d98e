"""Conversion of unstructured's elements into the product's own ``Element``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ingest.parsers.base import Element, ElementKind
from ingest.parsers.tables import html_table_rows, table_elements

# Running headers, footers and page numbers repeat on every page and would drown
# real passages in near-duplicates.
_SKIPPED = {"Header", "Footer", "PageBreak", "PageNumber", "Image"}
_KINDS: dict[str, ElementKind] = {"Title": "title", "ListItem": "list", "Table": "table"}


def convert_elements(elements: Iterable[Any], *, page: int | None = None) -> list[Element]:
    """The elements worth indexing, in reading order; ``page`` overrides their own."""
    converted: list[Element] = []
    for element in elements:
        category = getattr(element, "category", "")
        if category in _SKIPPED:
            continue
        text = (element.text or "").strip()
        if not text:
            continue
        number = page or getattr(element.metadata, "page_number", None)
        element_page = int(number) if number else None
        if category == "Table":
            rows = _table_rows(element)
            if rows:
                converted.extend(table_elements(rows, page=element_page))
                continue
        converted.append(Element(text=text, kind=_KINDS.get(category, "text"), page=element_page))
    return converted


def _table_rows(element: Any) -> list[list[str]]:
    """A table's rows from its HTML, when unstructured recovered the structure."""
    html = getattr(element.metadata, "text_as_html", None)
    if not html:
        return []
    try:
        return html_table_rows(html)
    except Exception:  # lxml's errors vary with the input; flat text is a fine fallback
        return []
