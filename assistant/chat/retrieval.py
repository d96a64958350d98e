"""Retrieval: a retriever returns scored passages and nothing else.

Permissions are applied before any score is computed: a retriever is built for a
``Scope`` (``assistant.accounts.scope``) that the caller's permissions produced
(``assistant.accounts.selectors.read_scope``): the collections they may read, minus
the documents inside them that are restricted away from them. It searches only those collections' indexes, skips
hidden documents' chunks inside the index scan itself, and checks every hit against
the database (the chunk still exists, belongs to one of those collections, its
document is ready and not hidden) before it is returned.

The searches go through the configured engine (``ingest.vector_store``: FAISS and BM25
files, or pgvector and PostgreSQL's full-text search). Kinds: ``dense`` (cosine), ``lexical``
(BM25 with FAISS, ``ts_rank_cd`` with pgvector), ``hybrid``
(both, fused; the default), ``rerank`` (hybrid candidates reordered by a cross-encoder
an admin configures). Every passage carries ``relevance``, the cosine of the question and
its stored embedding, so one threshold means the same whichever kind found it.

With a read replica (``DATABASE_REPLICA_URL``) a retriever's reads go to the replica when
``assistant.replica`` allows it; its passages then pass ``passages_current`` on the primary.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np
from django.conf import settings

from assistant import replica
from assistant.accounts.scope import Scope
from assistant.chat import document_match
from assistant.chat.fusion import fuse, with_document_prior, with_matches
from assistant.ops.metrics import stage_timer
from ingest import index
from ingest.models import Chunk, Document
from ingest.vector_store import vector_store


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
    # The cosine of the question and this passage's embedded text, whatever the retriever
    # (``score`` is only comparable within one retriever): what relevance floors compare.
    relevance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retriever(Protocol):
    def retrieve(self, query: str, *, k: int) -> list[Passage]: ...


def _query_vector(query: str) -> np.ndarray:
    from ingest.embedding import embed_query

    with stage_timer("embed"):
        return np.asarray(embed_query(query), dtype=np.float32)


def _cosine(vector: np.ndarray, chunk: Chunk) -> float:
    from ingest.embedding import from_bytes

    stored = from_bytes(chunk.embedding)
    if stored.shape != vector.shape:  # a collection embedded with another model, not yet reindexed
        return 0.0
    return float(np.dot(vector, stored))


class DenseRetriever:
    """Cosine search over the scope's FAISS indexes, hidden documents skipped in the scan."""

    def __init__(self, *, scope: Scope) -> None:
        self.scope = scope

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        if not self.scope.collection_ids or not query.strip():
            return []
        vector = _query_vector(query)
        hits = self.hits(vector, k=k * 2 + 10)
        return passages_for(hits, scope=self.scope, vector=vector)[:k]

    def hits(self, vector: np.ndarray, *, k: int, hidden: Mapping[int, list[int]] | None = None) -> list[index.Hit]:
        """The scope's ``k`` best hits per collection; ``hidden``: ``Scope.hidden_chunk_ids()``, if known."""
        with stage_timer("vector"):
            if self.scope.document_ids is not None:
                return _document_dense_hits(self.scope, vector, k=k)
            return vector_store().dense_search(scope=self.scope, vector=vector, k=k, hidden=hidden)


# A scope narrowed to a few documents is searched by scoring those documents' chunks
# directly, not by scanning the collection's index for its top hits and hoping some
# of them belong to the document.
def _document_dense_hits(scope: Scope, vector: np.ndarray, *, k: int) -> list[index.Hit]:
    rows = scope.document_chunks().only("id", "embedding")
    hits = [index.Hit(chunk_id=chunk.pk, score=_cosine(vector, chunk)) for chunk in rows]
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits[:k]


def _document_lexical_hits(
    scope: Scope, query: str, *, k: int, hidden: Mapping[int, list[int]] | None
) -> list[index.Hit]:
    scores = vector_store().lexical_scores(
        scope=scope, query=query, chunk_ids=scope.document_chunk_ids(), hidden=hidden
    )
    hits = [index.Hit(chunk_id=c, score=s) for c, s in scores.items() if s > 0]
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits[:k]


class LexicalRetriever:
    """BM25 over the scope's lexical indexes, hidden documents' chunks scored zero before ranking."""

    def __init__(self, *, scope: Scope) -> None:
        self.scope = scope

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        if not self.scope.collection_ids or not query.strip():
            return []
        hits = self.hits(query, k=k * 2 + 10)
        if not hits:
            return []
        return passages_for(hits, scope=self.scope, vector=_query_vector(query))[:k]

    def hits(self, query: str, *, k: int, hidden: Mapping[int, list[int]] | None = None) -> list[index.Hit]:
        """The scope's ``k`` best hits per collection; ``hidden``: ``Scope.hidden_chunk_ids()``, if known."""
        with stage_timer("lexical"):
            if self.scope.document_ids is not None:
                return _document_lexical_hits(self.scope, query, k=k, hidden=hidden)
            return vector_store().lexical_search(scope=self.scope, query=query, k=k, hidden=hidden)


@dataclass(frozen=True)
class Candidates:
    rows: dict[int, Chunk]
    cosines: dict[int, float]
    bm25: dict[int, float]


class HybridRetriever:
    """Dense and lexical candidates, each scored by both, fused (``fuse``).

    Each search proposes ``RETRIEVAL_CANDIDATES`` chunks from inside the scope (hidden
    chunks are skipped by both scans). For their union the cosine comes from the
    chunks' stored embeddings and the BM25 score from the lexical index, so a chunk one
    search ranked just outside its list still gets its true score from it.
    """

    def __init__(
        self,
        *,
        scope: Scope,
        method: str | None = None,
        dense_weight: float | None = None,
        candidates: int | None = None,
        rrf_k: int | None = None,
        document_weight: float | None = None,
        match_weight: float | None = None,
        heading_weight: float | None = None,
    ) -> None:
        self.scope = scope
        self.document_weight = settings.RETRIEVAL_DOCUMENT_WEIGHT if document_weight is None else document_weight
        self.match_weight = settings.RETRIEVAL_DOCUMENT_MATCH_WEIGHT if match_weight is None else match_weight
        self.heading_weight = settings.RETRIEVAL_HEADING_WEIGHT if heading_weight is None else heading_weight
        self.method = method or settings.RETRIEVAL_FUSION
        self.dense_weight = settings.RETRIEVAL_DENSE_WEIGHT if dense_weight is None else dense_weight
        self.candidates = candidates or settings.RETRIEVAL_CANDIDATES
        self.rrf_k = rrf_k or settings.RETRIEVAL_RRF_K
        if self.method not in ("convex", "rrf"):
            raise ValueError(f"Unknown fusion {self.method!r}: use convex or rrf.")

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        return passages_spread(self.candidate_passages(query, k=k), per_page=settings.RETRIEVAL_PASSAGES_PER_PAGE)[:k]

    def candidate_passages(self, query: str, *, k: int) -> list[Passage]:
        """Every fused candidate the scope may read, best first, with score = fused score."""
        if not self.scope.collection_ids or not query.strip():
            return []
        terms = document_match.question_terms(query) if self.match_weight > 0 or self.heading_weight > 0 else set()
        # A scope already narrowed to documents has nothing left to name.
        named = (
            document_match.document_scores(self.scope, terms)
            if self.match_weight > 0 and self.scope.document_ids is None
            else {}
        )
        candidates = self.candidates_scored(
            query,
            _query_vector(query),
            k=k,
            documents=document_match.named_documents(named, most=settings.RETRIEVAL_NAMED_DOCUMENTS),
        )
        fused = fuse(
            candidates.cosines,
            candidates.bm25,
            method=self.method,
            dense_weight=self.dense_weight,
            rrf_k=self.rrf_k,
        )
        fused = with_document_prior(
            fused,
            {c: row.document_id for c, row in candidates.rows.items()},
            weight=self.document_weight,
            top=settings.RETRIEVAL_DOCUMENT_TOP,
        )
        fused = with_matches(
            fused,
            candidates.rows,
            documents=named,
            sections=(
                document_match.section_coverage(
                    terms,
                    {c: document_match.section_of(r.heading, r.document.title) for c, r in candidates.rows.items()},
                )
                if self.heading_weight > 0
                else {}
            ),
            document_weight=self.match_weight,
            heading_weight=self.heading_weight,
        )
        return [passage_of(candidates.rows[c], score=s, relevance=candidates.cosines[c]) for c, s in fused]

    def candidates_scored(self, query: str, vector: np.ndarray, *, k: int, documents: Sequence[int] = ()) -> Candidates:
        """The union of both searches' candidates, each with its cosine and its BM25 score.

        ``documents``: documents the question names; each one's own best passages (by
        both searches, within it) join the candidates, so that a passage of the named
        report is scored even when other reports' passages fill the collection-wide lists.
        """
        wanted = max(self.candidates, k)
        hidden = self.scope.hidden_chunk_ids()
        hits = [
            *DenseRetriever(scope=self.scope).hits(vector, k=wanted, hidden=hidden),
            *LexicalRetriever(scope=self.scope).hits(query, k=wanted, hidden=hidden),
        ]
        if documents and self.scope.document_ids is None:
            hits += self._named_hits(query, vector, documents, k=wanted, hidden=hidden)
        rows = _readable_chunks([h.chunk_id for h in hits], scope=self.scope)
        cosines = {chunk_id: _cosine(vector, chunk) for chunk_id, chunk in rows.items()}
        return Candidates(rows=rows, cosines=cosines, bm25=self._bm25(query, rows, hidden))

    def _named_hits(
        self, query: str, vector: np.ndarray, documents: Sequence[int], *, k: int, hidden: Mapping[int, list[int]]
    ) -> list[index.Hit]:
        """The named documents' best ``k`` passages by cosine and by word match; one query for their vectors."""
        by_collection: dict[int, list[int]] = {}
        dense: list[index.Hit] = []
        with stage_timer("vector"):
            named = self.scope.only_documents(documents).document_chunks()
            for chunk in named.only("id", "collection_id", "embedding"):
                by_collection.setdefault(chunk.collection_id, []).append(chunk.pk)
                dense.append(index.Hit(chunk_id=chunk.pk, score=_cosine(vector, chunk)))
        with stage_timer("lexical"):
            scores = vector_store().lexical_scores(
                scope=self.scope, query=query, chunk_ids=by_collection, hidden=hidden
            )
        lexical = [index.Hit(chunk_id=c, score=s) for c, s in scores.items() if s > 0]
        best = [sorted(hits, key=lambda h: (-h.score, h.chunk_id))[:k] for hits in (dense, lexical)]
        return [*best[0], *best[1]]

    def _bm25(self, query: str, rows: dict[int, Chunk], hidden: Mapping[int, list[int]]) -> dict[int, float]:
        by_collection: dict[int, list[int]] = {}
        for chunk_id, chunk in rows.items():
            by_collection.setdefault(chunk.collection_id, []).append(chunk_id)
        with stage_timer("lexical"):
            # With the statistics of the same visible chunks the lexical search ranked.
            return vector_store().lexical_scores(scope=self.scope, query=query, chunk_ids=by_collection, hidden=hidden)


class RerankRetriever:
    """Hybrid candidates reordered by a cross-encoder read from ``RERANKER_MODEL_PATH``."""

    def __init__(self, *, scope: Scope, model_path: str | None = None) -> None:
        self.scope = scope
        self.model_path = model_path or settings.RERANKER_MODEL_PATH
        if not self.model_path:
            raise ValueError("The rerank retriever needs RERANKER_MODEL_PATH (a local cross-encoder folder).")

    def retrieve(self, query: str, *, k: int) -> list[Passage]:
        candidates = HybridRetriever(scope=self.scope).candidate_passages(query, k=k)
        candidates = candidates[: max(k, settings.RERANKER_CANDIDATES)]
        if not candidates:
            return []
        model = cross_encoder(self.model_path)
        with stage_timer("rerank"):
            scores = model.predict([(query, _passage_text(p)) for p in candidates], show_progress_bar=False)
        order = sorted(range(len(candidates)), key=lambda i: -float(scores[i]))
        reranked = [replace(candidates[i], score=round(float(scores[i]), 4)) for i in order]
        return passages_spread(reranked, per_page=settings.RETRIEVAL_PASSAGES_PER_PAGE)[:k]


_cross_encoders: dict[str, Any] = {}
_cross_encoder_lock = threading.Lock()


def cross_encoder(path: str) -> Any:
    """The cross-encoder in ``path``, loaded once per process (sentence-transformers, CPU)."""
    from pathlib import Path

    with _cross_encoder_lock:
        if path not in _cross_encoders:
            if not Path(path).is_dir():
                raise ValueError(f"RERANKER_MODEL_PATH {path!r} is not a folder holding a cross-encoder model.")
            from sentence_transformers import CrossEncoder

            _cross_encoders[path] = CrossEncoder(path, device="cpu")
        return _cross_encoders[path]


def _passage_text(passage: Passage) -> str:
    if passage.heading and not passage.text.startswith(passage.heading):
        return f"{passage.heading}\n{passage.text}"
    return passage.text


# What a passage is made of (``passage_of``, ``_cosine``): the other columns stay in the database.
PASSAGE_FIELDS = (
    "id",
    "document_id",
    "collection_id",
    "heading",
    "text",
    "page_start",
    "page_end",
    "embedding",
    "document__name",
    "document__title",
)


def _readable_chunks(chunk_ids: Iterable[int], *, scope: Scope) -> dict[int, Chunk]:
    """The rows among ``chunk_ids`` the scope may read right now (exists, ready, not hidden)."""
    with stage_timer("load"):
        return {c.pk: c for c in scope.readable_chunks(chunk_ids).select_related("document").only(*PASSAGE_FIELDS)}


def passage_of(chunk: Chunk, *, score: float, relevance: float | None = None) -> Passage:
    """A chunk as a passage (``chunk.document`` loaded), its scores rounded as every surface shows them."""
    return Passage(
        chunk_id=chunk.pk,
        document_id=chunk.document_id,
        document_name=chunk.document.name,
        collection_id=chunk.collection_id,
        heading=chunk.heading,
        text=chunk.text,
        page_start=chunk.page_start,
        page_end=chunk.page_end,
        score=round(score, 4),
        relevance=None if relevance is None else round(relevance, 4),
    )


def passages_for(hits: Sequence[index.Hit], *, scope: Scope, vector: np.ndarray | None = None) -> list[Passage]:
    """Hits as passages, in hit order, keeping only rows the scope may read right now.

    With the query's ``vector``, each passage's ``relevance`` is its cosine to it.
    """
    rows = _readable_chunks([h.chunk_id for h in hits], scope=scope)
    passages = []
    for hit in hits:
        chunk = rows.get(hit.chunk_id)
        if chunk is None:
            continue
        relevance = None if vector is None else _cosine(vector, chunk)
        passages.append(passage_of(chunk, score=hit.score, relevance=relevance))
    return passages


def passages_current(passages: list[Passage]) -> list[Passage]:
    """The passages whose document is still there and ready on the primary (all of them without a replica).

    A search read from a replica sees its copy, which may lag: a document deleted,
    replaced or sent back for processing a moment ago must not be served from it.
    One query on the primary, for the few documents found.
    """
    if not passages or not replica.configured():
        return passages
    found = {p.document_id for p in passages}
    current = set(
        Document.objects.using(replica.PRIMARY)
        .filter(pk__in=found, status=Document.Status.READY)
        .values_list("pk", flat=True)
    )
    return [p for p in passages if p.document_id in current]


def relevant_passages(passages: Sequence[Passage], *, floor: float) -> list[Passage]:
    """The passages at or above the relevance floor (a passage without a relevance is kept)."""
    return [p for p in passages if p.relevance is None or p.relevance >= floor]


def passages_spread(passages: Sequence[Passage], *, per_page: int) -> list[Passage]:
    """``passages`` with at most ``per_page`` of each page first, best first, then the others in order.

    A statement page often holds several matching passages (rows of one table); in the
    few passages an answer cites they would crowd out the other pages that may hold the
    answer. ``per_page`` 0 keeps the order; a passage without a page is never held back.
    """
    if per_page <= 0:
        return list(passages)
    first: list[Passage] = []
    later: list[Passage] = []
    seen: Counter[tuple[int, int]] = Counter()
    for passage in passages:
        if passage.page_start is not None:
            page = (passage.document_id, passage.page_start)
            if seen[page] >= per_page:
                later.append(passage)
                continue
            seen[page] += 1
        first.append(passage)
    return first + later


def passages_merge(*found: list[Passage], k: int) -> list[Passage]:
    """Passages of several searches, each chunk once (its best relevance), most relevant first, at most ``k``
    (spread over pages as one search's are).

    Every list went through the same floor; the merge keeps the lists' own order
    among passages without a relevance.
    """
    best: dict[int, Passage] = {}
    order: list[int] = []
    for passages in found:
        for passage in passages:
            kept = best.get(passage.chunk_id)
            if kept is None:
                order.append(passage.chunk_id)
                best[passage.chunk_id] = passage
            elif (passage.relevance or 0.0) > (kept.relevance or 0.0):
                best[passage.chunk_id] = passage

    def relevance(chunk_id: int) -> float:
        known = best[chunk_id].relevance
        return 1.0 if known is None else known

    ranked = sorted(order, key=lambda c: -relevance(c))
    return passages_spread([best[c] for c in ranked], per_page=settings.RETRIEVAL_PASSAGES_PER_PAGE)[:k]


def is_low_relevance(passages: Sequence[Passage], *, weak: float) -> bool:
    """True when there are passages and the best of them is below ``weak``.

    No passage at all is not "low relevance": the answer then says nothing was found.
    """
    known = [p.relevance for p in passages if p.relevance is not None]
    return bool(known) and max(known) < weak


# Every surface (chat, ``ask``, the API, ``evaluate``) gets its retriever here, by kind,
# so a new kind becomes available everywhere at once.
RETRIEVER_KINDS: tuple[str, ...] = ("dense", "lexical", "hybrid", "rerank")


def available_retrievers() -> list[str]:
    """The kinds usable with the current settings, in the order reports list them.

    ``rerank`` needs a cross-encoder folder (``RERANKER_MODEL_PATH``); none ships.
    """
    return [kind for kind in RETRIEVER_KINDS if kind != "rerank" or settings.RERANKER_MODEL_PATH]


def build_retriever(kind: str, *, scope: Scope) -> Retriever:
    if kind not in available_retrievers():
        if kind == "rerank":
            raise ValueError("The rerank retriever needs RERANKER_MODEL_PATH (a local cross-encoder folder).")
        raise ValueError(f"Unknown retriever {kind!r}; known: {', '.join(available_retrievers())}.")
    if kind == "dense":
        return DenseRetriever(scope=scope)
    if kind == "lexical":
        return LexicalRetriever(scope=scope)
    if kind == "hybrid":
        return HybridRetriever(scope=scope)
    return RerankRetriever(scope=scope)
