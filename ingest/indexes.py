"""Index upkeep for both search engines behind one facade: FAISS (``index.py``) and BM25 (``lexical.py``).

The database is the source of truth and both indexes are caches derived from it, so
every write that changes which chunks are ready goes through here and keeps the two
in step: ``indexes_upsert`` and ``indexes_remove`` for chunks that come and go,
``indexes_drop`` for a deleted collection, ``indexes_rebuild`` and
``collection_reindex`` to derive them again, and ``indexes_ensure`` and
``indexes_searched``, which a reader calls to heal a missing or unreadable file
without knowing how it is written.

A file that exists but cannot be read back (truncated, damaged: ``IndexFileUnreadable``)
is never answered with an empty result nor an error: the reader or writer that finds it
rebuilds the collection's indexes from the database, logs it, and goes on.
``indexes_damaged`` is the cheap look ``/readyz`` takes at every file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from django.conf import settings
from django.db import transaction

from assistant.replica import primary_reads
from ingest import index, lexical
from ingest.index_files import IndexFileUnreadable
from ingest.models import Chunk, Document

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Chunk ids per query when reading chosen rows (well under SQLite's limit on parameters).
_ROWS_AT_ONCE = 10_000


def indexes_upsert(
    *,
    collection_id: int,
    ids: Sequence[int],
    vectors: np.ndarray | None,
    texts: Sequence[str],
    remove: Sequence[int] = (),
) -> None:
    """Add (or replace) chunks under their ids in both indexes, and drop ``remove`` ids."""

    def write() -> None:
        index.index_upsert(collection_id=collection_id, ids=ids, vectors=vectors, remove=remove)
        lexical.lexical_upsert(collection_id=collection_id, ids=ids, texts=texts, remove=remove)

    _healing(collection_id, write)


def indexes_remove(*, collection_id: int, ids: Sequence[int]) -> None:
    """Take chunks out of both indexes."""

    def write() -> None:
        index.index_remove(collection_id=collection_id, ids=ids)
        lexical.lexical_remove(collection_id=collection_id, ids=ids)

    _healing(collection_id, write)


def indexes_drop(*, collection_id: int) -> None:
    """Delete a collection's index files."""
    index.index_delete(collection_id=collection_id)
    lexical.lexical_delete(collection_id=collection_id)


def _replace(*, collection_id: int, ids: Sequence[int], vectors: np.ndarray, texts: Sequence[str]) -> None:
    index.index_replace(collection_id=collection_id, ids=ids, vectors=vectors)
    lexical.lexical_replace(collection_id=collection_id, ids=ids, texts=texts)


def indexed_rows(
    collection_id: int, *, exclude: Sequence[int] = (), only: Sequence[int] | None = None
) -> list[tuple[int, str, bytes | memoryview]]:
    """(chunk id, indexed text, embedding) of a collection's ready chunks, in id order.

    ``only``: just these chunks (those of them that are ready), read a slice at a time.
    """
    from ingest.chunking import indexed_text

    ready = Chunk.objects.filter(collection_id=collection_id, document__status=Document.Status.READY)
    if exclude:
        ready = ready.exclude(id__in=list(exclude))
    fields = ("id", "document__context", "heading", "text", "embedding")
    if only is None:
        found = list(ready.order_by("id").values_list(*fields))
    else:
        wanted = sorted(only)
        found = [
            row
            for start in range(0, len(wanted), _ROWS_AT_ONCE)
            for row in ready.filter(id__in=wanted[start : start + _ROWS_AT_ONCE]).order_by("id").values_list(*fields)
        ]
    return [
        (chunk_id, indexed_text(context=context, heading=heading, text=text), embedding)
        for chunk_id, context, heading, text, embedding in found
    ]


def ready_chunk_ids(collection_id: int) -> set[int]:
    """The ids of a collection's ready chunks: what every engine should hold for it."""
    return set(
        Chunk.objects.filter(collection_id=collection_id, document__status=Document.Status.READY).values_list(
            "id", flat=True
        )
    )


def indexes_rebuild(*, collection_id: int, lexical_only: bool = False) -> int:
    """Rebuild one collection's indexes (or its lexical one alone) from the database. Returns its size."""
    # From the primary, even when a search on a read replica heals a lost file: an index
    # built from a replica's older copy would lack what it had not replayed yet, for good.
    with primary_reads():
        rows = indexed_rows(collection_id)
    ids = [r[0] for r in rows]
    texts = [r[1] for r in rows]
    if lexical_only:
        lexical.lexical_replace(collection_id=collection_id, ids=ids, texts=texts)
        return len(ids)
    from ingest.embedding import from_bytes

    vectors = np.vstack([from_bytes(r[2]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    _replace(collection_id=collection_id, ids=ids, vectors=vectors, texts=texts)
    return len(ids)


def indexes_ensure(*, collection_id: int) -> None:
    """The indexes are caches: if one is missing while the database has chunks, rebuild it."""
    faiss_missing = not index.index_path(collection_id).exists()
    lexical_missing = not lexical.lexical_path(collection_id).exists()
    if not (faiss_missing or lexical_missing):
        return
    if Chunk.objects.filter(collection_id=collection_id, document__status=Document.Status.READY).exists():
        indexes_rebuild(collection_id=collection_id, lexical_only=not faiss_missing)


def _healing(collection_id: int, action: Callable[[], T]) -> T:
    """``action()``; if it finds an index file unreadable, rebuild the collection's indexes and run it again.

    The rebuild reads the chunks of ready documents as this transaction sees them, so
    a writer in the middle of storing new chunks gets the others back and then adds its own.
    """
    try:
        return action()
    except IndexFileUnreadable as exc:
        broken = exc
    if not _file_problem(broken.path):
        # Another process may have rebuilt it meanwhile: rebuilding again could drop
        # chunks that process is adding. (A file damaged inside fails again below.)
        try:
            return action()
        except IndexFileUnreadable as exc:
            broken = exc
    logger.error(
        "Index file %s is unreadable (%s): rebuilding collection %d's indexes from the database",
        broken.path.name, broken.reason, collection_id,
    )  # fmt: skip
    size = indexes_rebuild(collection_id=collection_id)
    logger.warning("Collection %d's indexes rebuilt from the database: %d passages", collection_id, size)
    return action()


def indexes_searched(*, collection_id: int, search: Callable[[], T]) -> T:
    """``search()`` over a collection's indexes, after healing a missing or unreadable file.

    A reader never gets an empty answer (nor an error) because a cache file was lost or
    damaged: the indexes are derived again from the database first.
    """
    indexes_ensure(collection_id=collection_id)
    return _healing(collection_id, search)


def _file_problem(path: Path) -> str:
    """What is wrong with an index file, from its header and length ("" if nothing, or not an index file)."""
    if path.name.endswith(".faiss"):
        return index.index_file_problem(path)
    if path.name.endswith(".bm25.npz"):
        return lexical.lexical_file_problem(path)
    return ""


def indexes_damaged() -> list[str]:
    """Index files in ``INDEX_DIR`` that cannot be whole, each as "name: problem" (cheap checks only).

    Only what a file's own header and length tell: it does not read the vectors.
    """
    directory = Path(settings.INDEX_DIR)
    damaged = []
    for path in sorted(directory.glob("collection-*")):
        problem = _file_problem(path)
        if problem:
            damaged.append(f"{path.name}: {problem}")
    return damaged


def collection_reindex(*, collection_id: int) -> int:
    """Re-embed every chunk of a collection with the configured model, then swap indexes.

    For a changed embedding model (or a changed way of composing what is embedded):
    the old index keeps answering while the new vectors are computed, and the new
    index replaces it in one rename. Chunks that became ready meanwhile are added
    after the swap. Returns the number of vectors.
    """
    from ingest.embedding import embed_texts, from_bytes, text_digest, to_bytes
    from ingest.vector_migration import idle_engines_forget
    from ingest.vector_store import vector_store

    rows = indexed_rows(collection_id)
    texts = [r[1] for r in rows]
    vectors = embed_texts(texts) if texts else np.zeros((0, 0), np.float32)
    ids = [row[0] for row in rows]
    with transaction.atomic():
        Chunk.objects.bulk_update(
            [
                Chunk(id=chunk_id, embedding=to_bytes(v), text_hash=text_digest(t))
                for chunk_id, v, t in zip(ids, vectors, texts, strict=True)
            ],
            ["embedding", "text_hash"],
            batch_size=500,
        )
        store = vector_store()
        if store.name == "faiss":
            _replace(collection_id=collection_id, ids=ids, vectors=vectors, texts=texts)
        else:  # rows written in this transaction, from the embeddings just updated
            store.rebuild(collection_id=collection_id)
    # The idle engine's copy of this collection (a move under way, or one left behind)
    # holds the old vectors under the same ids, which a catch-up cannot tell apart.
    idle_engines_forget(collection_id=collection_id)
    late = indexed_rows(collection_id, exclude=ids)
    if late:
        store.upsert(
            collection_id=collection_id,
            ids=[r[0] for r in late],
            vectors=np.vstack([from_bytes(r[2]) for r in late]),
            texts=[r[1] for r in late],
        )
    return len(ids) + len(late)
