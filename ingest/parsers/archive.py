"""ZIP archives: no text of their own; every member file becomes a document.

An archive is the easiest way to hand a worker a hostile file, so the limits are
checked on the central directory before a byte is decompressed: the number of
entries, the total unpacked size, the compression ratio (a zip bomb), and names
that climb out of the archive (``../../etc/passwd``). Reading is safe after that:
Python's zipfile never returns more than the size a member declares.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ingest.parsers.base import Attachment, ParsedDocument, ParseError
from ingest.parsers.limits import limit

# Small members compress far better than any ratio limit (a 100 KB file of
# spaces, a sparse CSV) and cannot hurt anyone on their own: the total size limit
# covers many of them. The ratio is only judged above this size.
_RATIO_CHECKED_ABOVE = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        raise ParseError(f"The archive contains an unsafe path ({name[:200]!r}) and was refused.")


def _is_document(member: zipfile.ZipInfo) -> bool:
    """Folders, links, macOS metadata and hidden files are not documents."""
    if member.is_dir() or stat.S_ISLNK(member.external_attr >> 16):
        return False
    parts = PurePosixPath(member.filename.replace("\\", "/")).parts
    return bool(parts) and parts[0] != "__MACOSX" and not any(part.startswith(".") for part in parts)


def _check_limits(members: list[zipfile.ZipInfo]) -> None:
    max_members = limit("INGEST_ARCHIVE_MAX_MEMBERS")
    if len(members) > max_members:
        raise ParseError(
            f"The archive has {len(members):,} entries, more than the limit of {max_members:,} "
            "(INGEST_ARCHIVE_MAX_MEMBERS)."
        )
    max_ratio = limit("INGEST_ARCHIVE_MAX_RATIO")
    total = 0
    for member in members:
        _check_name(member.filename)
        if member.flag_bits & 0x1:
            raise ParseError("The archive is password-protected. Upload a copy without a password.")
        total += member.file_size
        if member.file_size > _RATIO_CHECKED_ABOVE and member.file_size > max_ratio * max(member.compress_size, 1):
            raise ParseError(
                f"The archive looks like a zip bomb: {member.filename[:200]!r} expands "
                f"{member.file_size // max(member.compress_size, 1):,} times, more than the limit of {max_ratio} "
                "(INGEST_ARCHIVE_MAX_RATIO)."
            )
    max_total = limit("INGEST_ARCHIVE_MAX_TOTAL_BYTES")
    if total > max_total:
        raise ParseError(
            f"The archive unpacks to {_size(total)}, more than the limit of {_size(max_total)} "
            "(INGEST_ARCHIVE_MAX_TOTAL_BYTES)."
        )


class ZipParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"zip"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                _check_limits(members)
                attachments = [
                    Attachment(name=member.filename.replace("\\", "/"), content=archive.read(member))
                    for member in members
                    if _is_document(member)
                ]
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError) as exc:
            # NotImplementedError: a compression method zipfile lacks (e.g. Deflate64).
            raise ParseError(f"The archive is damaged or uses an unsupported format ({exc}).") from exc
        if not attachments:
            raise ParseError("The archive contains no files.")
        return ParsedDocument(attachments=attachments)
