"""ZIP archives: no text of their own; every member file becomes a document.

An archive is the easiest way to hand a worker a hostile file, so the limits are
checked on the central directory before a byte is decompressed (the number of
entries, the total unpacked size, the compression ratio of each member and of the
whole: ``limits.check_zip_members``), names that climb out of the archive
(``../../etc/passwd``) are refused, and every member is unpacked once, a block at a
time, to check it is what it declares. Members are never held in memory: each is
streamed from the archive when it is stored as a document of its own.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, ClassVar

from django.conf import settings

from ingest.parsers.base import Attachment, ParsedDocument, ParseError
from ingest.parsers.limits import check_zip_members, size_text, verify_zip_members

_DRIVE = re.compile(r"^[A-Za-z]:")


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


def _check_members(members: list[zipfile.ZipInfo]) -> None:
    upload_limit = settings.MAX_UPLOAD_BYTES
    for member in members:
        _check_name(member.filename)
        if member.flag_bits & 0x1:
            raise ParseError("The archive is password-protected. Upload a copy without a password.")
        # Each member becomes an upload of its own, under the same limit.
        if member.file_size > upload_limit:
            raise ParseError(
                f"The archive holds {member.filename[:200]!r} of {size_text(member.file_size)}, more than the "
                f"upload limit of {size_text(upload_limit)} (ASSISTANT_MAX_UPLOAD_BYTES)."
            )


class _Members:
    """Streams of an archive's members, for storing them one after the other.

    The archive is opened once, when the first member is stored, not once per
    member: reading the central directory of a 10,000-entry archive 10,000 times
    would cost more than the members. It closes when the parse result is dropped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None

    @contextmanager
    def open(self, member: zipfile.ZipInfo) -> Iterator[IO[bytes]]:
        if self.archive is None:
            self.archive = zipfile.ZipFile(self.path)
        with self.archive.open(member) as stream:
            yield stream

    def __del__(self) -> None:
        if self.archive is not None:
            self.archive.close()


class ZipParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"zip"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
            check_zip_members(members, stored_bytes=path.stat().st_size, what="archive")
            _check_members(members)
            documents = [member for member in members if _is_document(member)]
            verify_zip_members(path, documents, what="archive")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError) as exc:
            # NotImplementedError: a compression method zipfile lacks (e.g. Deflate64).
            raise ParseError(f"The archive is damaged or uses an unsupported format ({exc}).") from exc
        if not documents:
            raise ParseError("The archive contains no files.")
        streams = _Members(path)
        return ParsedDocument(
            attachments=[
                Attachment(name=member.filename.replace("\\", "/"), opener=partial(streams.open, member))
                for member in documents
            ]
        )
