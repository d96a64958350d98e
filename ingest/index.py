"""Per-collection FAISS indexes: a cache derived from ``Chunk.embedding``.

Layout: ``INDEX_DIR/collection-<id>.faiss``, an ``IndexIDMap2`` over an exact
inner-product index whose ids are chunk primary keys. Writers take an exclusive
``flock`` on ``collection-<id>.lock`` (one writer per index across every process on
the host, and across containers sharing the volume), build the new index in memory,
write it to a temporary file and ``os.replace`` it, so a reader only ever opens a
complete file. Readers never lock: they keep the last index they loaded and reload
when the file's identity (inode, size, mtime) changes.

Nothing read back from disk is unpickled or evaluated: FAISS reads its own format.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

_cache: dict[str, tuple[tuple[int, int, int], Any]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float


def index_path(collection_id: int) -> Path:
    return Path(settings.INDEX_DIR) / f"collection-{collection_id}.faiss"


@contextlib.contextmanager
def _write_lock(collection_id: int) -> Iterator[None]:
    directory = Path(settings.INDEX_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"collection-{collection_id}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _new_index(dimensions: int) -> Any:
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimensions))


def _read(path: Path) -> Any:
    import faiss

    return faiss.read_index(str(path))


def _write_atomically(index: Any, path: Path) -> None:
    import faiss

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _as_ids(ids: Sequence[int]) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


def index_upsert(
    *, collection_id: int, ids: Sequence[int], vectors: np.ndarray | None, remove: Sequence[int] = ()
) -> None:
    """Add (or replace) vectors under chunk ids, and drop ``remove`` ids, in one write."""
    path = index_path(collection_id)
    with _write_lock(collection_id):
        if path.exists():
            index = _read(path)
        elif vectors is not None and len(ids):
            index = _new_index(vectors.shape[1])
        else:
            return  # nothing to add, nothing to remove from
        stale = _as_ids([*ids, *remove])
        if len(stale):
            index.remove_ids(stale)  # makes a repeated add idempotent
        if len(ids) and vectors is not None:
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _as_ids(ids))
        _write_atomically(index, path)


def index_remove(*, collection_id: int, ids: Sequence[int]) -> None:
    if ids:
        index_upsert(collection_id=collection_id, ids=[], vectors=None, remove=ids)


def index_replace(*, collection_id: int, ids: Sequence[int], vectors: np.ndarray) -> None:
    """Write a whole index from scratch (the rebuild path)."""
    path = index_path(collection_id)
    with _write_lock(collection_id):
        index = _new_index(vectors.shape[1] if len(vectors) else _dims())
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _as_ids(ids))
        _write_atomically(index, path)


def index_delete(*, collection_id: int) -> None:
    with _write_lock(collection_id):
        index_path(collection_id).unlink(missing_ok=True)
    with _cache_lock:
        _cache.pop(str(index_path(collection_id)), None)


def index_size(collection_id: int) -> int:
    index = _load(collection_id)
    return 0 if index is None else int(index.ntotal)


def _load(collection_id: int) -> Any | None:
    path = index_path(collection_id)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = str(path)
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] == identity:
            return cached[1]
        index = _read(path)
        _cache[key] = (identity, index)
        return index


def index_search(*, collection_id: int, vector: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
    """The ``k`` nearest chunk ids in one collection's index, best first.

    ``exclude`` chunk ids are never considered: FAISS skips them while it scans, so
    they cannot take a place in the top ``k`` nor be seen in any score.
    """
    index = _load(collection_id)
    if index is None or index.ntotal == 0 or k <= 0:
        return []
    query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    if len(exclude):
        import faiss

        # Kept alive in locals until the search returns: FAISS holds raw pointers.
        excluded = faiss.IDSelectorBatch(_as_ids(exclude))
        selector = faiss.IDSelectorNot(excluded)
        params = faiss.SearchParameters()
        params.sel = selector
        scores, ids = index.search(query, min(k, int(index.ntotal)), params=params)
    else:
        scores, ids = index.search(query, min(k, int(index.ntotal)))
    return [Hit(chunk_id=int(i), score=float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


def _dims() -> int:
    from ingest.embedding import dimensions

    return dimensions()
