"""Retrieval: a retriever returns scored passages and nothing else.

Permissions are applied before any score is computed: a retriever is built for a
``Scope`` that the caller's permissions produced (``assistant.accounts.selectors.
read_scope``): the collections they may read, minus the documents inside them that
are restricted away from them. It searches only those collections' indexes, skips
hidden documents' chunks inside the index scan itself, and checks every hit against
the database (the chunk still exists, belongs to one of those collections, its
document is ready and not hidden) before it is returned.
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


@dataclass(frozen=True)
class Scope:
    """What one asker may search.

    Every retriever honours ``hidden_document_ids`` inside its own search, before
    ranking, so a hidden passage can neither be returned nor push a visible one out
    of the top ``k``.
    """

    collection_ids: tuple[int, ...]
    hidden_document_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, collection_ids: Sequence[int], hidden_document_ids: Sequence[int] = ()) -> Scope:
        return cls(tuple(collection_ids), frozenset(hidden_document_ids))

    def hidden_chunk_ids(self, collection_id: int) -> list[int]:
        """Chunk ids of this collection's hidden documents (what the index scan skips)."""
        if not self.hidden_document_ids:
            return []
        return list(
            Chunk.objects.filter(collection_id=collection_id, document_id__in=self.hidden_document_ids).values_list(
                "id", flat=True
            )
        )


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
    """Cosine search over the scope's FAISS indexes, hidden documents skipped in the scan."""

    def __init__(self, *, scope: Scope) -> None:
        self.scope = scope

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        if not self.scope.collection_ids or not query.strip():
            return []
        from ingest.embedding import embed_query

        vector = embed_query(query)
        hits: list[index.Hit] = []
        for collection_id in self.scope.collection_ids:
            _ensure_index(collection_id)
            # Over-fetch: hits of deleted or not-yet-ready documents are dropped below.
            hits.extend(
                index.index_search(
                    collection_id=collection_id,
                    vector=vector,
                    k=k * 2 + 10,
                    exclude=self.scope.hidden_chunk_ids(collection_id),
                )
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        return passages_for(hits, scope=self.scope)[:k]


def passages_for(hits: Sequence[index.Hit], *, scope: Scope) -> list[Passage]:
    """Hits as passages, in hit order, keeping only rows the scope may read right now."""
    rows = {
        c.pk: c
        for c in Chunk.objects.filter(
            id__in=[h.chunk_id for h in hits],
            collection_id__in=scope.collection_ids,
            document__status=Document.Status.READY,
        )
        .exclude(document_id__in=scope.hidden_document_ids)
        .select_related("document")
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


# Every surface (chat, ``ask``, the API, ``evaluate``) gets its retriever here, by kind,
# so a new kind (lexical, hybrid, reranked) becomes available everywhere at once.
RETRIEVER_KINDS: tuple[str, ...] = ("dense",)


def available_retrievers() -> list[str]:
    """The kinds usable with the current settings, in the order reports list them."""
    return list(RETRIEVER_KINDS)


def build_retriever(kind: str, *, scope: Scope) -> Retriever:
    if kind == "dense":
        return DenseRetriever(scope=scope)
    raise ValueError(f"Unknown retriever {kind!r}; known: {', '.join(available_retrievers())}.")
