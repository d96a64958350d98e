"""What one asker may search: the ``Scope`` the read rules produce and retrieval consumes.

``assistant.accounts.selectors.read_scope`` builds it from a user's permissions; every
retriever in ``assistant.chat.retrieval`` is built for one. It lives beside the read
rules and imports models only, so the permission layer never depends on retrieval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from ingest.models import Chunk, Document


@dataclass(frozen=True)
class Scope:
    """What one asker may search.

    Every retriever honours ``hidden_document_ids`` inside its own search, before
    ranking, so a hidden passage can neither be returned nor push a visible one out
    of the top ``k``. ``document_ids``, when set, narrows the search further to
    those documents ("chat with this document"); it never widens it: a hidden
    document stays hidden whatever is asked for.
    """

    collection_ids: tuple[int, ...]
    hidden_document_ids: frozenset[int] = frozenset()
    document_ids: frozenset[int] | None = None

    @classmethod
    def of(cls, collection_ids: Sequence[int], hidden_document_ids: Sequence[int] = ()) -> Scope:
        return cls(tuple(collection_ids), frozenset(hidden_document_ids))

    def only_documents(self, document_ids: Iterable[int]) -> Scope:
        """This scope narrowed to ``document_ids`` (within what it already allows)."""
        wanted = frozenset(document_ids)
        narrowed = wanted if self.document_ids is None else wanted & self.document_ids
        return Scope(self.collection_ids, self.hidden_document_ids, narrowed)

    def document_chunk_ids(self) -> dict[int, list[int]]:
        """For a scope narrowed to documents: their readable chunk ids, by collection."""
        by_collection: dict[int, list[int]] = {}
        if not self.document_ids:
            return by_collection
        for collection_id, chunk_id in self.document_chunks().values_list("collection_id", "id"):
            by_collection.setdefault(collection_id, []).append(chunk_id)
        return by_collection

    def document_chunks(self) -> QuerySet[Chunk]:
        """For a scope narrowed to documents: their chunks it may read (ready, not hidden)."""
        return Chunk.objects.filter(
            collection_id__in=self.collection_ids,
            document_id__in=self.document_ids or (),
            document__status=Document.Status.READY,
        ).exclude(document_id__in=self.hidden_document_ids)

    def hidden_chunk_ids(self) -> dict[int, list[int]]:
        """Chunk ids of the hidden documents, by collection (what the index scans skip).

        One query for the whole scope; none at all when nothing is hidden.
        """
        if not self.hidden_document_ids:
            return {}
        by_collection: dict[int, list[int]] = {}
        rows = Chunk.objects.filter(
            collection_id__in=self.collection_ids, document_id__in=self.hidden_document_ids
        ).values_list("collection_id", "id")
        for collection_id, chunk_id in rows:
            by_collection.setdefault(collection_id, []).append(chunk_id)
        return by_collection

    def documents_in_progress(self) -> int:
        """How many documents of the scope the asker may see are still being ingested (one query)."""
        documents = Document.objects.filter(collection_id__in=self.collection_ids).exclude(
            status__in=[Document.Status.READY, Document.Status.FAILED]
        )
        return documents.exclude(pk__in=self.hidden_document_ids).count()

    def readable_chunks(self, chunk_ids: Iterable[int]) -> QuerySet[Chunk]:
        """The chunks among ``chunk_ids`` this scope may read right now.

        They still exist, sit in one of its collections, and their document is ready
        and not hidden: what every hit is checked against before it becomes a passage.
        """
        chunks = Chunk.objects.filter(
            id__in=list(set(chunk_ids)),
            collection_id__in=self.collection_ids,
            document__status=Document.Status.READY,
        ).exclude(document_id__in=self.hidden_document_ids)
        if self.document_ids is not None:
            chunks = chunks.filter(document_id__in=self.document_ids)
        return chunks
