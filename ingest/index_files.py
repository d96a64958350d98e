"""How both engines' index files are written and read back (FAISS in ``index.py``, BM25 in ``lexical.py``).

Writers take an exclusive ``flock`` per collection and kind (one writer per index
across every process on the host, and across containers sharing the volume), write
the new file under a temporary name and ``os.replace`` it, so a reader only ever
opens a complete file. Readers never lock: they keep the last index they loaded and
reload when the file's identity (inode, size, mtime) changes.
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

T = TypeVar("T")


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


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class LoadedFiles(Generic[T]):
    """The indexes this process has read, each kept while its file is unchanged."""

    def __init__(self, read: Callable[[Path], T]) -> None:
        self._read = read
        self._loaded: dict[str, tuple[tuple[int, int, int], T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> T | None:
        """The index in ``path``, read again only if the file changed; None if there is none."""
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
            loaded = self._read(path)
            self._loaded[key] = (identity, loaded)
            return loaded

    def forget(self, path: Path | None = None) -> None:
        """Drop the copy of ``path`` (every copy when None), e.g. to free memory or after a delete."""
        with self._lock:
            if path is None:
                self._loaded.clear()
            else:
                self._loaded.pop(str(path), None)
