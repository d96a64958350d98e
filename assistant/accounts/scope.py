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
    of the top ``k``.
    """

    collection_ids: tuple[int, ...]
    hidden_document_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, collection_ids: Sequence[int], hidden_document_ids: Sequence[int] = ()) -> Scope:
        return cls(tuple(collection_ids), frozenset(hidden_document_ids))

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

    def readable_chunks(self, chunk_ids: Iterable[int]) -> QuerySet[Chunk]:
        """The chunks among ``chunk_ids`` this scope may read right now.

        They still exist, sit in one of its collections, and their document is ready
        and not hidden: what every hit is checked against before it becomes a passage.
        """
        return Chunk.objects.filter(
            id__in=list(set(chunk_ids)),
            collection_id__in=self.collection_ids,
            document__status=Document.Status.READY,
        ).exclude(document_id__in=self.hidden_document_ids)
