"""Index upkeep for both search engines behind one facade: FAISS (``index.py``) and BM25 (``lexical.py``).

The database is the source of truth and both indexes are caches derived from it, so
every write that changes which chunks are ready goes through here and keeps the two
in step: ``indexes_upsert`` and ``indexes_remove`` for chunks that come and go,
``indexes_drop`` for a deleted collection, ``indexes_rebuild`` and
``collection_reindex`` to derive them again, and ``indexes_ensure``, which a reader
calls to heal a missing file without knowing how it is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from django.db import transaction

from ingest import index, lexical
from ingest.models import Chunk, Document


def indexes_upsert(
    *,
    collection_id: int,
    ids: Sequence[int],
    vectors: np.ndarray | None,
    texts: Sequence[str],
    remove: Sequence[int] = (),
) -> None:
    """Add (or replace) chunks under their ids in both indexes, and drop ``remove`` ids."""
    index.index_upsert(collection_id=collection_id, ids=ids, vectors=vectors, remove=remove)
    lexical.lexical_upsert(collection_id=collection_id, ids=ids, texts=texts, remove=remove)


def indexes_remove(*, collection_id: int, ids: Sequence[int]) -> None:
    """Take chunks out of both indexes."""
    index.index_remove(collection_id=collection_id, ids=ids)
    lexical.lexical_remove(collection_id=collection_id, ids=ids)


def indexes_drop(*, collection_id: int) -> None:
    """Delete a collection's index files."""
    index.index_delete(collection_id=collection_id)
    lexical.lexical_delete(collection_id=collection_id)


def _replace(*, collection_id: int, ids: Sequence[int], vectors: np.ndarray, texts: Sequence[str]) -> None:
    index.index_replace(collection_id=collection_id, ids=ids, vectors=vectors)
    lexical.lexical_replace(collection_id=collection_id, ids=ids, texts=texts)


def _indexed_rows(collection_id: int, *, exclude: Sequence[int] = ()) -> list[tuple[int, str, bytes | memoryview]]:
    """(chunk id, indexed text, embedding) of a collection's ready chunks, in id order."""
    from ingest.chunking import indexed_text

    rows = (
        Chunk.objects.filter(collection_id=collection_id, document__status=Document.Status.READY)
        .exclude(id__in=list(exclude))
        .order_by("id")
        .values_list("id", "document__context", "heading", "text", "embedding")
    )
    return [
        (chunk_id, indexed_text(context=context, heading=heading, text=text), embedding)
        for chunk_id, context, heading, text, embedding in rows
    ]


def indexes_rebuild(*, collection_id: int, lexical_only: bool = False) -> int:
    """Rebuild one collection's indexes (or its lexical one alone) from the database. Returns its size."""
    rows = _indexed_rows(collection_id)
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


def collection_reindex(*, collection_id: int) -> int:
    """Re-embed every chunk of a collection with the configured model, then swap indexes.

    For a changed embedding model (or a changed way of composing what is embedded):
    the old index keeps answering while the new vectors are computed, and the new
    index replaces it in one rename. Chunks that became ready meanwhile are added
    after the swap. Returns the number of vectors.
    """
    from ingest.embedding import embed_texts, from_bytes, text_digest, to_bytes

    rows = _indexed_rows(collection_id)
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
        _replace(collection_id=collection_id, ids=ids, vectors=vectors, texts=texts)
    late = _indexed_rows(collection_id, exclude=ids)
    if late:
        indexes_upsert(
            collection_id=collection_id,
            ids=[r[0] for r in late],
            vectors=np.vstack([from_bytes(r[2]) for r in late]),
            texts=[r[1] for r in late],
        )
    return len(ids) + len(late)
