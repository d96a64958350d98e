"""Limits that keep one hostile or absurd file from exhausting a worker.

Read from Django settings on every use (tests and admins may change them), with
defaults so that the parsers work before the settings name them.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from django.conf import settings

from ingest.parsers.base import ParseError

DEFAULTS: dict[str, int] = {
    "INGEST_MAX_PAGES": 10_000,
    "INGEST_ARCHIVE_MAX_MEMBERS": 10_000,
    "INGEST_ARCHIVE_MAX_TOTAL_BYTES": 2 * 1024**3,
    "INGEST_ARCHIVE_MAX_RATIO": 200,
    "INGEST_ARCHIVE_MAX_DEPTH": 4,
}

# Compression ratios are judged with a floor. One small member may compress far
# better than any ratio limit (a 500 KB file of spaces, a sparse CSV) and costs
# nothing on its own; a whole archive (or office file) of small files likewise. The
# floors are absolute, so that many members together still answer to the ratio.
MEMBER_RATIO_FLOOR = 1024 * 1024
ARCHIVE_RATIO_FLOOR = 16 * 1024 * 1024

# Zip-based formats other than ZIP itself: their parsers unpack them in memory.
ZIP_PACKAGES = frozenset({"docx", "pptx", "xlsx", "odt", "epub"})


def limit(name: str) -> int:
    return int(getattr(settings, name, DEFAULTS[name]))


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def check_page_count(pages: int, *, unit: str = "pages") -> None:
    """Refuse a document longer than ``INGEST_MAX_PAGES`` before any work is spent on it."""
    maximum = limit("INGEST_MAX_PAGES")
    if pages > maximum:
        raise ParseError(
            f"The file has {pages:,} {unit}, more than the limit of {maximum:,} pages per document (INGEST_MAX_PAGES)."
        )


def check_nesting(depth: int) -> None:
    """Refuse to unpack a file found ``depth`` levels inside others (archives, e-mails).

    Each level is checked on its own, so nesting is what would multiply the work: an
    archive of archives of archives. A file at the limit may be read, not unpacked.
    """
    maximum = limit("INGEST_ARCHIVE_MAX_DEPTH")
    if depth >= maximum:
        raise ParseError(
            f"The file was found {depth} levels deep inside archives or e-mails; the files inside it would go "
            f"deeper than the limit of {maximum} levels (INGEST_ARCHIVE_MAX_DEPTH)."
        )


def check_zip_members(members: Sequence[zipfile.ZipInfo], *, stored_bytes: int, what: str) -> None:
    """Refuse a zip (an archive, a DOCX...) whose central directory promises too much.

    Judged before a byte is decompressed: the number of entries, the total unpacked
    size, and the compression ratio of each member and of the whole (zip bombs).
    Python's zipfile never returns more than a member declares, and the members are
    read against their checksums (``verify_zip_members``), so the declared sizes hold.
    """
    max_members = limit("INGEST_ARCHIVE_MAX_MEMBERS")
    if len(members) > max_members:
        raise ParseError(
            f"The {what} has {len(members):,} entries, more than the limit of {max_members:,} "
            "(INGEST_ARCHIVE_MAX_MEMBERS)."
        )
    max_ratio = limit("INGEST_ARCHIVE_MAX_RATIO")
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > max(MEMBER_RATIO_FLOOR, max_ratio * member.compress_size):
            raise ParseError(
                f"The {what} looks like a zip bomb: {member.filename[:200]!r} expands "
                f"{member.file_size // max(member.compress_size, 1):,} times, more than the limit of {max_ratio} "
                "(INGEST_ARCHIVE_MAX_RATIO)."
            )
    max_total = limit("INGEST_ARCHIVE_MAX_TOTAL_BYTES")
    if total > max_total:
        raise ParseError(
            f"The {what} unpacks to {size_text(total)}, more than the limit of {size_text(max_total)} "
            "(INGEST_ARCHIVE_MAX_TOTAL_BYTES)."
        )
    if total > max(ARCHIVE_RATIO_FLOOR, max_ratio * stored_bytes):
        raise ParseError(
            f"The {what} looks like a zip bomb: its {size_text(stored_bytes)} unpack to {size_text(total)}, "
            f"{total // max(stored_bytes, 1):,} times as much, more than the limit of {max_ratio} "
            "(INGEST_ARCHIVE_MAX_RATIO)."
        )


def _inflated_size(handle: IO[bytes], member: zipfile.ZipInfo) -> int:
    """How many bytes a deflated member really unpacks to, stopping just past its declared size.

    Read from the raw data, not through zipfile: zipfile stops at the declared size
    and checks the checksum of what it read, so a member declaring a few bytes while
    its data unpacks to gigabytes would pass it, and a parser that trusts the data
    (pandoc's zip reader) would unpack it all.
    """
    handle.seek(member.header_offset)
    header = handle.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    handle.seek(member.header_offset + 30 + name_length + extra_length)
    inflater = zlib.decompressobj(-15)
    left, produced = member.compress_size, 0
    while left > 0 and not inflater.eof:
        pending = handle.read(min(left, 1024 * 1024))
        if not pending:
            raise EOFError("the data ends early")
        left -= len(pending)
        while pending and not inflater.eof:
            produced += len(inflater.decompress(pending, 1024 * 1024))
            if produced > member.file_size:
                return produced  # enough to know it lies
            pending = inflater.unconsumed_tail
    return produced


def verify_zip_members(path: Path, members: Sequence[zipfile.ZipInfo], *, what: str) -> None:
    """Unpack each member a block at a time, keeping nothing, to check it is what it declares.

    A damaged member, or one whose data unpacks to more than it declares (a bomb
    hidden from the checks on the central directory), is refused here with a
    reason, before a parser reads it for real.
    """
    try:
        with open(path, "rb") as raw, zipfile.ZipFile(path) as archive:
            for member in members:
                if member.is_dir():
                    continue
                if member.compress_type == zipfile.ZIP_DEFLATED and _inflated_size(raw, member) > member.file_size:
                    raise ParseError(
                        f"The {what} looks like a zip bomb: {member.filename[:200]!r} declares "
                        f"{size_text(member.file_size)} but its data unpacks to more."
                    )
                with archive.open(member) as stream:  # the checksum, for every method
                    while stream.read(1024 * 1024):
                        pass
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ParseError(f"The {what} is damaged: a member could not be read ({exc}).") from exc


def check_zip_package(path: Path, *, file_type: str) -> None:
    """The zip limits for a DOCX, PPTX, XLSX, ODT or EPUB, before its parser unpacks it."""
    what = f"{file_type.upper()} file"
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ParseError(f"The {what} is damaged and could not be read ({exc}).") from exc
    check_zip_members(members, stored_bytes=path.stat().st_size, what=what)
    try:
        verify_zip_members(path, members, what=what)
    except NotImplementedError as exc:  # a compression method zipfile lacks
        raise ParseError(f"The {what} uses an unsupported compression method ({exc}).") from exc
