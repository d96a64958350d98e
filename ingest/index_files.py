"""How both engines' index files are written and read back (FAISS in ``index.py``, BM25 in ``lexical.py``).

Writers take an exclusive ``flock`` per collection and kind (one writer per index
across every process on the host, and across containers sharing the volume), write
the new file under a temporary name and ``os.replace`` it, so a reader only ever
opens a complete file. Readers never lock: they keep the last index they loaded and
reload when the file's identity (inode, size, mtime) changes.

A file that cannot be read back (truncated by a full disk or a bad copy, damaged on
the volume) raises ``IndexFileUnreadable``: the indexes are caches, and the caller
(``indexes``) rebuilds them from the database rather than serve nothing. A write that
fails (no space left) removes its temporary file and leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from django.conf import settings

from ingest import disk

T = TypeVar("T")


class IndexFileUnreadable(Exception):
    """An index file exists but its contents cannot be read back (``path``, ``reason``)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name} cannot be read: {reason}")
        self.path = path
        self.reason = reason


def read_checked(path: Path, read: Callable[[Path], T]) -> T:
    """``read(path)``, any failure but a missing file raised as ``IndexFileUnreadable``."""
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # FAISS raises RuntimeError, numpy/zipfile several kinds
        raise IndexFileUnreadable(path, f"{type(exc).__name__}: {exc}"[:300]) from exc


@contextlib.contextmanager
def collection_write_lock(collection_id: int, kind: str = "") -> Iterator[None]:
    """One writer at a time for a collection's index of ``kind`` ("": FAISS), across processes."""
    directory = Path(settings.INDEX_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = f".{kind}" if kind else ""
    with open(directory / f"collection-{collection_id}{suffix}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(path: Path, write: Callable[[Path], None], *, check: Callable[[Path], str] | None = None) -> None:
    """Have ``write`` fill a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    ``check`` (the file's problem, "" if none) is asked before the rename: a writer
    that does not report a failed write (FAISS ignores an error on closing its file)
    must not put an incomplete file in place.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        problem = check(tmp) if check is not None else ""
        if problem:
            raise disk.incomplete_write(path, problem)
        os.replace(tmp, path)
    except BaseException:
        # A full disk leaves a partial file: never leave it to fill what space returns.
        tmp.unlink(missing_ok=True)
        raise


class LoadedFiles(Generic[T]):
    """The indexes this process has read, each kept while its file is unchanged."""

    def __init__(self, read: Callable[[Path], T]) -> None:
        self._read = read
        self._loaded: dict[str, tuple[tuple[int, int, int], T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> T | None:
        """The index in ``path``, read again only if the file changed; None if there is none.

        Raises ``IndexFileUnreadable`` when the file is there but cannot be read.
        """
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        key = str(path)
        with self._lock:
            cached = self._loaded.get(key)
            if cached and cached[0] == identity:
                return cached[1]
            try:
                loaded = read_checked(path, self._read)
            except FileNotFoundError:
                return None
            self._loaded[key] = (identity, loaded)
            return loaded

    def forget(self, path: Path | None = None) -> None:
        """Drop the copy of ``path`` (every copy when None), e.g. to free memory or after a delete."""
        with self._lock:
            if path is None:
                self._loaded.clear()
            else:
                self._loaded.pop(str(path), None)
