"""Limits that keep one hostile or absurd file from exhausting a worker.

Read from Django settings on every use (tests and admins may change them), with
defaults so that the parsers work before the settings name them.
"""

from __future__ import annotations

from django.conf import settings

from ingest.parsers.base import ParseError

DEFAULTS: dict[str, int] = {
    "INGEST_MAX_PAGES": 10_000,
    "INGEST_ARCHIVE_MAX_MEMBERS": 10_000,
    "INGEST_ARCHIVE_MAX_TOTAL_BYTES": 2 * 1024**3,
    "INGEST_ARCHIVE_MAX_RATIO": 200,
}


def limit(name: str) -> int:
    return int(getattr(settings, name, DEFAULTS[name]))


def check_page_count(pages: int, *, unit: str = "pages") -> None:
    """Refuse a document longer than ``INGEST_MAX_PAGES`` before any work is spent on it."""
    maximum = limit("INGEST_MAX_PAGES")
    if pages > maximum:
        raise ParseError(
            f"The file has {pages:,} {unit}, more than the limit of {maximum:,} pages per document (INGEST_MAX_PAGES)."
        )
