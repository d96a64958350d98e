"""Per-collection FAISS indexes: a cache derived from ``Chunk.embedding``.

Layout: ``INDEX_DIR/collection-<id>.faiss``, one file per collection whose ids are
chunk primary keys. Its type follows the collection's size:

* up to ``INDEX_EXACT_MAX`` vectors, exact search: an ``IndexIDMap2`` over an
  inner-product ``IndexFlatIP``;
* above it, an inverted-file index (``IndexIVFFlat``, inner product, ids stored in
  its lists) trained on the collection's own vectors, with ``nprobe`` calibrated at
  training time against exact search on a sample of those vectors, so that
  Recall@10 reaches ``INDEX_IVF_RECALL``. HNSW is not used: it cannot remove ids,
  and deletes and new document versions remove ids on every write.

A write that takes the size across the threshold (either way) switches the type; an
IVF index whose size moved more than 4x away from the size it was trained for is
retrained by the next write (or rebuild), because its lists no longer fit the data.

Writers take an exclusive ``flock`` on ``collection-<id>.lock``, build the new index
in memory and replace the file atomically; readers keep the last index they loaded
until the file changes (both in ``index_files.py``, shared with the BM25 index). They
read the file into memory: searching mapped IVF lists measured about twice as slow
(docs/retrieval-scale.md). With ``INDEX_MMAP`` they map an IVF file's lists instead,
so a reload after a write is cheap and processes on one host share one copy in the
page cache, at that cost per search.

Nothing read back from disk is unpickled or evaluated: FAISS reads its own format.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from ingest.index_files import LoadedFiles, collection_write_lock, read_checked, write_atomically

logger = logging.getLogger(__name__)

# k-means needs enough points per centroid: FAISS warns below 39 and gains little above
# a few dozen, while training time grows with the sample.
TRAIN_POINTS_PER_LIST = 40
# The calibration: this many of the collection's own vectors are searched, exactly and
# approximately, for their neighbours; nprobe is the first of the ladder to reach the
# recall target with half of its misses to spare (the sample is small, and the ladder
# stops at the first step over the line: held-out queries measured up to 0.015 lower).
# Recall is measured at k=10, the depth retrieval asks for.
CALIBRATION_QUERIES = 200
CALIBRATION_K = 10
CALIBRATION_MISS_SHARE = 0.5
# Retrain when the lists an index has are more than this factor away from the lists its
# size calls for: nlist grows with the square root of the size, so this is a collection
# grown (or shrunk) 4x since training, whose lists have become too long (or too short).
RETRAIN_LISTS_FACTOR = 2


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    score: float


def index_path(collection_id: int) -> Path:
    return Path(settings.INDEX_DIR) / f"collection-{collection_id}.faiss"


def _new_flat(dimensions: int) -> Any:
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimensions))


def _is_ivf(index: Any) -> bool:
    import faiss

    return isinstance(index, faiss.IndexIVF)


def _wants_ivf(size: int) -> bool:
    return size > settings.INDEX_EXACT_MAX


def nlist_for(size: int) -> int:
    """Lists for an IVF index of ``size`` vectors: about 4 sqrt(n), enough training points each."""
    return max(1, min(round(4 * math.sqrt(size)), size // TRAIN_POINTS_PER_LIST))


def _drifted(index: Any, size: int) -> bool:
    """An IVF index trained for a size far from ``size``: its lists no longer fit the data."""
    wanted, have = nlist_for(size), int(index.nlist)
    return wanted > have * RETRAIN_LISTS_FACTOR or wanted * RETRAIN_LISTS_FACTOR < have


def index_build(*, ids: np.ndarray, vectors: np.ndarray) -> Any:
    """A new index of the type the size calls for, holding ``vectors`` under ``ids``."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not _wants_ivf(len(ids)):
        index = _new_flat(vectors.shape[1])
        if len(ids):
            index.add_with_ids(vectors, ids)
        return index
    nlist = nlist_for(len(ids))
    # FAISS's Python wrapper keeps the quantizer alive as long as the index; an index
    # read back from its file owns its own.
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = min(len(ids), nlist * TRAIN_POINTS_PER_LIST)
    rows = np.sort(rng.choice(len(ids), size=sample, replace=False)) if sample < len(ids) else slice(None)
    index.train(vectors[rows])
    index.add_with_ids(vectors, ids)
    index.nprobe = _calibrated_nprobe(index, vectors, rng)
    logger.info("IVF index: %d vectors, %d lists, nprobe %d", len(ids), nlist, index.nprobe)
    return index


def _calibrated_nprobe(index: Any, vectors: np.ndarray, rng: np.random.Generator) -> int:
    """The smallest nprobe whose Recall@10 against exact search reaches ``INDEX_IVF_RECALL``.

    The queries are the collection's own vectors, each looking for its neighbours other
    than itself. A hit tied with the exact 10th score counts as found, so duplicate
    chunks (identical vectors) do not make recall look worse than it is.
    """
    import faiss

    n, k = len(vectors), CALIBRATION_K
    queries = vectors[np.sort(rng.choice(n, size=min(n, CALIBRATION_QUERIES), replace=False))]
    exact_scores, _ = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    # Drop the query itself: its best match, at a cosine of one.
    threshold = exact_scores[:, k] - 1e-5
    target = 1 - (1 - float(settings.INDEX_IVF_RECALL)) * CALIBRATION_MISS_SHARE
    nlist = int(index.nlist)
    nprobe = 1
    while True:
        scores, _ = index.search(queries, k + 1, params=_ivf_params(nprobe))
        found = (scores[:, 1:] >= threshold[:, None]).sum(axis=1)
        recall = float(np.mean(np.minimum(found, k) / k))
        if recall >= target or nprobe >= nlist:
            return nprobe
        nprobe = min(nlist, max(nprobe + 1, round(nprobe * 1.5)))


def _ivf_params(nprobe: int) -> Any:
    import faiss

    # An IVF index refuses plain SearchParameters, and they would reset its nprobe.
    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    return params


def _vectors_of(index: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every (id, vector) an index holds, for rebuilding it as another type."""
    import faiss

    dims = int(index.d)
    if not _is_ivf(index):
        n = int(index.ntotal)
        flat: Any = faiss.downcast_index(index.index)
        vectors = faiss.rev_swig_ptr(flat.get_xb(), n * dims).reshape(n, dims).copy()
        return faiss.vector_to_array(index.id_map).astype(np.int64), vectors
    lists = index.invlists
    ids: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for number in range(int(index.nlist)):
        size = int(lists.list_size(number))
        if size:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
            codes = faiss.rev_swig_ptr(lists.get_codes(number), size * int(index.code_size))
            rows.append(codes.view(np.float32).reshape(size, dims).copy())
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, dims), np.float32)
    return np.concatenate(ids).astype(np.int64), np.vstack(rows)


def _ids_of(index: Any) -> np.ndarray:
    """Every id an index holds, without its vectors."""
    import faiss

    if not _is_ivf(index):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    lists = index.invlists
    ids = [
        faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
        for number in range(int(index.nlist))
        if (size := int(lists.list_size(number)))
    ]
    return np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64)


def index_read(path: Path, *, mapped: bool = False) -> Any:
    """The index stored in ``path``, read from disk (not from this process's loaded copies)."""
    import faiss

    # Mapped, an IVF index's lists stay in the file (read-only); a flat index is read.
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP if mapped else 0)


def index_write(index: Any, path: Path) -> None:
    """Write ``index`` to ``path`` atomically (callers hold the collection's write lock)."""
    import faiss

    write_atomically(path, lambda tmp: faiss.write_index(index, str(tmp)), check=index_file_problem)


# FAISS's own layout (faiss/impl/index_write.cpp): a four-byte type, then the common
# header: d (int32), ntotal (int64), two int64 placeholders, is_trained (bool) and the
# metric (int32). An ID-mapped flat index is that header twice (the map, then the flat
# index), the vectors (an int64 count, then ntotal * d float32) and the ids (an int64
# count, then ntotal int64). An IVF index holds at least its vectors and their ids.
_HEADER = struct.Struct("<4siqqq?i")
_FLAT_FIXED = 2 * _HEADER.size + 8 + 8


def index_file_problem(path: Path) -> str:
    """Why ``path`` cannot be a whole index file ("" if its header and length agree), without reading it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(_HEADER.size)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    if len(head) < _HEADER.size:
        return f"truncated ({size} bytes)"
    kind, dims, total, *_ = _HEADER.unpack(head)
    per_vector = 4 * dims + 8
    if kind == b"IxM2":
        expected = _FLAT_FIXED + total * per_vector
        return "" if size == expected else f"truncated ({size} of {expected} bytes)"
    if kind in (b"IwFl", b"IwF2"):
        return "" if size >= total * per_vector else f"truncated ({size} bytes for {total} vectors)"
    return f"not an index this product writes (type {kind!r})"


_loaded: LoadedFiles[Any] = LoadedFiles(lambda path: index_read(path, mapped=bool(settings.INDEX_MMAP)))


def _as_ids(ids: Sequence[int]) -> np.ndarray:
    return np.asarray(list(ids), dtype=np.int64)


def index_upsert(
    *, collection_id: int, ids: Sequence[int], vectors: np.ndarray | None, remove: Sequence[int] = ()
) -> None:
    """Add (or replace) vectors under chunk ids, and drop ``remove`` ids, in one write.

    When the new size calls for another index type, or an IVF index has drifted from
    its training, the whole index is rebuilt from the vectors it holds plus the new ones.
    """
    path = index_path(collection_id)
    adding = len(ids) > 0 and vectors is not None
    with collection_write_lock(collection_id):
        if path.exists():
            index = read_checked(path, index_read)
        elif adding:
            index = _new_flat(vectors.shape[1])  # type: ignore[union-attr]
        else:
            return  # nothing to add, nothing to remove from
        stale = _as_ids([*ids, *remove])
        if len(stale):
            index.remove_ids(stale)  # makes a repeated add idempotent
        size = int(index.ntotal) + (len(ids) if adding else 0)
        rebuild = _wants_ivf(size) != _is_ivf(index) or (_is_ivf(index) and _drifted(index, size))
        if rebuild:
            old_ids, old_vectors = _vectors_of(index)
            del index  # one copy of a large index at a time
            if adding:
                new = np.ascontiguousarray(vectors, dtype=np.float32)
                old_ids = np.concatenate([old_ids, _as_ids(ids)])
                old_vectors = np.vstack([old_vectors, new]) if len(old_vectors) else new
            index = index_build(ids=old_ids, vectors=old_vectors)
        elif adding:
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), _as_ids(ids))
        index_write(index, path)


def index_remove(*, collection_id: int, ids: Sequence[int]) -> None:
    if ids:
        index_upsert(collection_id=collection_id, ids=[], vectors=None, remove=ids)


def index_replace(*, collection_id: int, ids: Sequence[int], vectors: np.ndarray) -> None:
    """Write a whole index from scratch (the rebuild path)."""
    path = index_path(collection_id)
    with collection_write_lock(collection_id):
        if len(ids):
            index = index_build(ids=_as_ids(ids), vectors=vectors)
        else:
            # An empty collection: the width from the (empty) array if it has one.
            index = _new_flat(vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else _dims())
        index_write(index, path)


def index_delete(*, collection_id: int) -> None:
    with collection_write_lock(collection_id):
        index_path(collection_id).unlink(missing_ok=True)
    _loaded.forget(index_path(collection_id))


def index_size(collection_id: int) -> int:
    index = index_load(collection_id)
    return 0 if index is None else int(index.ntotal)


def index_ids(collection_id: int) -> set[int]:
    """The chunk ids one collection's index holds (none without a file; a damaged one raises)."""
    index = index_load(collection_id)
    return set() if index is None else {int(i) for i in _ids_of(index).tolist()}


def index_load(collection_id: int) -> Any | None:
    """The collection's FAISS index as readers search it (this process's copy while the file is unchanged)."""
    return _loaded.get(index_path(collection_id))


def index_forget_loaded() -> None:
    """Drop every index this process has loaded (they are read again on the next search)."""
    _loaded.forget()


def index_search(*, collection_id: int, vector: np.ndarray, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
    """The ``k`` nearest chunk ids in one collection's index, best first.

    ``exclude`` chunk ids are never considered: FAISS skips them while it scans, so
    they cannot take a place in the top ``k`` nor be seen in any score.
    """
    index = index_load(collection_id)
    if index is None or index.ntotal == 0 or k <= 0:
        return []
    import faiss

    query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
    params = None
    if len(exclude):
        # Kept alive in locals until the search returns: FAISS holds raw pointers.
        excluded = faiss.IDSelectorBatch(_as_ids(exclude))
        selector = faiss.IDSelectorNot(excluded)
        params = _ivf_params(index.nprobe) if _is_ivf(index) else faiss.SearchParameters()
        params.sel = selector
    with _one_thread(faiss):
        scores, ids = index.search(query, min(k, int(index.ntotal)), params=params)
    return [Hit(chunk_id=int(i), score=float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


@contextlib.contextmanager
def _one_thread(faiss: Any) -> Iterator[None]:
    """Run one query's search on the calling thread's core only.

    A single query is a memory-bound scan; splitting it over OpenMP threads gains little
    and, on a busy machine (several requests, the embedding model, other processes),
    threads waiting for each other made exact search three times slower (measured in
    docs/retrieval-scale.md). OpenMP's thread count is per calling thread, so writers
    and other threads keep theirs.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _dims() -> int:
    from ingest.embedding import dimensions

    return dimensions()
