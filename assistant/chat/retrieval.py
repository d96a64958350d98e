"""Retrieval: a retriever returns scored passages and nothing else.

Permissions are applied before any score is computed: a retriever is built for a
fixed set of collection ids that the caller has already been allowed to read, it
searches only those collections' indexes, and every hit is checked against the
database (the chunk still exists, belongs to one of those collections, and its
document is ready) before it is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ingest import index
from ingest.models import Chunk, Document


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    document_name: str
    collection_id: int
    heading: str
    text: str
    page_start: int | None
    page_end: int | None
    score: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retriever(Protocol):
    def retrieve(self, query: str, *, k: int) -> list[Passage]: ...


def _ensure_index(collection_id: int) -> None:
    """The index is a cache: if it is missing while the database has chunks, rebuild it."""
    if index.index_path(collection_id).exists():
        return
    if Chunk.objects.filter(collection_id=collection_id, document__status=Document.Status.READY).exists():
        from ingest.services import index_rebuild

        index_rebuild(collection_id=collection_id)


class DenseRetriever:
    """Exact cosine search over the readable collections' FAISS indexes."""

    def __init__(self, *, collection_ids: Sequence[int]) -> None:
        self.collection_ids = list(collection_ids)

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        if not self.collection_ids or not query.strip():
            return []
        from ingest.embedding import embed_query

        vector = embed_query(query)
        hits: list[index.Hit] = []
        for collection_id in self.collection_ids:
            _ensure_index(collection_id)
            # Over-fetch: hits of deleted or not-yet-ready documents are dropped below.
            hits.extend(index.index_search(collection_id=collection_id, vector=vector, k=k * 2 + 10))
        hits.sort(key=lambda h: h.score, reverse=True)
        return _passages_for(hits, collection_ids=self.collection_ids)[:k]


def _passages_for(hits: Sequence[index.Hit], *, collection_ids: Sequence[int]) -> list[Passage]:
    rows = {
        c.pk: c
        for c in Chunk.objects.filter(
            id__in=[h.chunk_id for h in hits],
            collection_id__in=collection_ids,
            document__status=Document.Status.READY,
        ).select_related("document")
    }
    passages = []
    for hit in hits:
        chunk = rows.get(hit.chunk_id)
        if chunk is None:
            continue
        passages.append(
            Passage(
                chunk_id=chunk.pk,
                document_id=chunk.document_id,
                document_name=chunk.document.name,
                collection_id=chunk.collection_id,
                heading=chunk.heading,
                text=chunk.text,
                page_start=chunk.page_start,
                page_end=chunk.page_end,
                score=round(hit.score, 4),
            )
        )
    return passages
