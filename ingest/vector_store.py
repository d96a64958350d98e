"""Where passages' vectors and words are searched: one small interface, two engines.

``VECTOR_STORE`` picks the engine every reader and writer uses (``vector_store()``):

* ``faiss`` (the default): per-collection FAISS and BM25 files in ``INDEX_DIR``,
  caches derived from the database (``index.py``, ``lexical.py``, ``indexes.py``);
* ``pgvector``: the vectors and a full-text column in PostgreSQL itself, beside the
  chunks (``pgvector_store.py``), for instances that outgrow one host's files.

Readers hand over the asker's ``Scope`` (``assistant.accounts.scope``): each engine
keeps the scope's hidden documents out of its scan, before ranking, and returns hits
only from the scope's collections. Retrieval checks every hit against the database
afterwards all the same (``assistant.chat.retrieval.passages_for``).

Writers pass chunk ids with their vectors and indexed texts. With FAISS the files are
written beside the transaction (readers filter ids of a rolled-back one); with
pgvector the rows are written inside the caller's transaction, so a document's
chunks and their vectors commit, or roll back, together.

Moving a running instance from one engine to the other, without re-embedding, is
``vector_migration.py`` (``manage.py vectors migrate|drop|status``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from django.conf import settings

from ingest.index import Hit

if TYPE_CHECKING:
    from assistant.accounts.scope import Scope

ENGINES = ("faiss", "pgvector")


@dataclass(frozen=True)
class Held:
    """The chunk ids an engine holds for one collection."""

    complete: frozenset[int]  # searchable every way: by vector and by words
    present: frozenset[int]  # held in any way (a superset of ``complete``)


class VectorStore(Protocol):
    name: str

    def dense_search(
        self, *, scope: Scope, vector: np.ndarray, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        """The scope's best ``k`` hits by cosine (per collection for FAISS), best first."""
        ...

    def lexical_search(
        self, *, scope: Scope, query: str, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        """The scope's best ``k`` hits by word match (per collection for FAISS), best first."""
        ...

    def lexical_scores(
        self,
        *,
        scope: Scope,
        query: str,
        chunk_ids: Mapping[int, Sequence[int]],
        hidden: Mapping[int, list[int]] | None = None,
    ) -> dict[int, float]:
        """The word-match score of each chunk in ``chunk_ids`` (by collection); 0 for no match."""
        ...

    def upsert(
        self,
        *,
        collection_id: int,
        ids: Sequence[int],
        vectors: np.ndarray | None,
        texts: Sequence[str],
        remove: Sequence[int] = (),
    ) -> None:
        """Add (or replace) chunks under their ids and drop ``remove``, in one write."""
        ...

    def remove(self, *, collection_id: int, ids: Sequence[int]) -> None: ...

    def drop(self, *, collection_id: int) -> None:
        """Forget a deleted collection."""
        ...

    def rebuild(self, *, collection_id: int) -> int:
        """Derive a collection's entries again from the chunks' stored embeddings (no embedding). Returns its size."""
        ...

    def chunk_ids(self, *, collection_id: int) -> Held:
        """The chunk ids held for a collection, as stored (nothing is healed or written)."""
        ...


def _hidden(scope: Scope, hidden: Mapping[int, list[int]] | None) -> Mapping[int, list[int]]:
    return scope.hidden_chunk_ids() if hidden is None else hidden


class FaissStore:
    """Per-collection FAISS and BM25 files; a missing or damaged file is rebuilt from the database first."""

    name = "faiss"

    def _per_collection(
        self, scope: Scope, hidden: Mapping[int, list[int]] | None, search: Callable[[int, Sequence[int]], list[Hit]]
    ) -> list[Hit]:
        """``search(collection_id, exclude)`` over each collection of ``scope``, best first.

        Each search over-fetches: hits of deleted or not-yet-ready documents are dropped later.
        """
        from ingest import indexes

        hidden = _hidden(scope, hidden)
        hits: list[Hit] = []
        for collection_id in scope.collection_ids:
            exclude = hidden.get(collection_id, ())
            hits.extend(
                indexes.indexes_searched(
                    collection_id=collection_id, search=functools.partial(search, collection_id, exclude)
                )
            )
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits

    def dense_search(
        self, *, scope: Scope, vector: np.ndarray, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        from ingest import index

        return self._per_collection(
            scope,
            hidden,
            lambda collection_id, exclude: index.index_search(
                collection_id=collection_id, vector=vector, k=k, exclude=exclude
            ),
        )

    def lexical_search(
        self, *, scope: Scope, query: str, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        from ingest import lexical

        return self._per_collection(
            scope,
            hidden,
            lambda collection_id, exclude: lexical.lexical_search(
                collection_id=collection_id, query=query, k=k, exclude=exclude
            ),
        )

    def lexical_scores(
        self,
        *,
        scope: Scope,
        query: str,
        chunk_ids: Mapping[int, Sequence[int]],
        hidden: Mapping[int, list[int]] | None = None,
    ) -> dict[int, float]:
        from ingest import indexes, lexical

        hidden = _hidden(scope, hidden)
        scores: dict[int, float] = {}
        for collection_id, ids in chunk_ids.items():
            # With the statistics of the same visible chunks the lexical search ranked.
            scores.update(
                indexes.indexes_searched(
                    collection_id=collection_id,
                    search=functools.partial(
                        lexical.lexical_scores,
                        collection_id=collection_id,
                        query=query,
                        chunk_ids=ids,
                        exclude=hidden.get(collection_id, ()),
                    ),
                )
            )
        return scores

    def upsert(
        self,
        *,
        collection_id: int,
        ids: Sequence[int],
        vectors: np.ndarray | None,
        texts: Sequence[str],
        remove: Sequence[int] = (),
    ) -> None:
        from ingest import indexes

        indexes.indexes_upsert(collection_id=collection_id, ids=ids, vectors=vectors, texts=texts, remove=remove)

    def remove(self, *, collection_id: int, ids: Sequence[int]) -> None:
        from ingest import indexes

        indexes.indexes_remove(collection_id=collection_id, ids=ids)

    def drop(self, *, collection_id: int) -> None:
        from ingest import indexes

        indexes.indexes_drop(collection_id=collection_id)

    def rebuild(self, *, collection_id: int) -> int:
        from ingest import indexes

        return indexes.indexes_rebuild(collection_id=collection_id)

    def chunk_ids(self, *, collection_id: int) -> Held:
        """Raises ``IndexFileUnreadable`` for a damaged file; a missing one holds nothing."""
        from ingest import index, lexical

        vectors, words = index.index_ids(collection_id), lexical.lexical_ids(collection_id)
        return Held(complete=frozenset(vectors & words), present=frozenset(vectors | words))


def vector_store(name: str | None = None) -> VectorStore:
    """The engine ``name`` (default: the ``VECTOR_STORE`` setting)."""
    engine = name or settings.VECTOR_STORE
    if engine == "faiss":
        return FaissStore()
    if engine == "pgvector":
        from ingest.pgvector_store import PgvectorStore

        return PgvectorStore()
    raise ValueError(f"Unknown VECTOR_STORE {engine!r}: use one of {', '.join(ENGINES)}.")
