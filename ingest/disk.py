"""The disk holding the data directory running full: how it is recognised, and what people are told.

Uploaded originals (``MEDIA_ROOT``, unless ``ORIGINALS_DIR`` puts them elsewhere or
they are kept in a bucket: ``ingest/originals.py``) and the index files (``INDEX_DIR``)
live in the data directory. When it is full, an upload is refused and a document being processed
fails, each with a reason that says so, and nothing half-written stays behind: the
partial original is removed, an index write leaves the previous file as it was, and
the chunks' transaction rolls back. Once space is back, the upload is sent again or
the document reprocessed (docs/reliability.md, "Infrastructure faults").
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)

UPLOAD_REFUSED = (
    "The file could not be stored: no space left on the data disk. Ask an administrator to free space, then upload "
    "it again."
)
PROCESSING_FAILED = (
    "No space left on the data disk: the passages could not be stored. Free space, then reprocess the document."
)


def caused_by_full_disk(exc: BaseException) -> bool:
    """True if ``exc`` (or what it wraps) is a write refused for want of space.

    FAISS reports a failed write as a RuntimeError carrying the system's message, so
    the message is read too.
    """
    full_messages = tuple(os.strerror(code) for code in _FULL)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL:
            return True
        if any(message in str(seen) for message in full_messages):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def incomplete_write(path: Path, problem: str) -> OSError:
    """The error for a file found incomplete right after it was written (a writer that hid a failed write)."""
    try:
        stat = os.statvfs(path.parent)
        full = stat.f_bavail * stat.f_frsize < 1024 * 1024
    except OSError:
        full = False
    code = errno.ENOSPC if full else errno.EIO
    return OSError(code, f"{os.strerror(code)}: {path.name} is incomplete after writing ({problem})", str(path))
