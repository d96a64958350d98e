"""Read-side queries on collections and documents."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from ingest.models import Chunk, Collection, Document


def collection_documents(*, collection: Collection, documents: QuerySet[Document] | None = None) -> QuerySet[Document]:
    """Newest first. ``documents``: the ones the viewer may see (all when not given)."""
    if documents is None:
        documents = collection.documents.all()
    return documents.prefetch_related("restricted_to_groups").order_by("-created_at", "-id")


def collection_summary(*, collection: Collection, documents: QuerySet[Document] | None = None) -> dict[str, int]:
    """Documents per status, plus the total number of chunks that are searchable.

    ``documents``: the ones the viewer may see (``accounts.selectors.
    documents_visible_to``), so that counts never reveal hidden documents.
    """
    if documents is None:
        documents = collection.documents.all()
    counts = documents.aggregate(
        total=Count("id"),
        **{status: Count("id", filter=Q(status=status)) for status in Document.Status.values},
    )
    counts["chunks"] = Chunk.objects.filter(
        collection=collection, document__in=documents.filter(status=Document.Status.READY).values("pk")
    ).count()
    return counts


def document_as_dict(document: Document) -> dict[str, Any]:
    elapsed = None
    if document.started_at:
        end = document.finished_at
        if end is None:
            from django.utils import timezone

            end = timezone.now()
        elapsed = round((end - document.started_at).total_seconds(), 1)
    return {
        "id": document.pk,
        "name": document.name,
        "status": document.status,
        "file_type": document.file_type,
        "pages": document.pages,
        "chunks": document.chunk_count,
        "progress_done": document.progress_done,
        "progress_total": document.progress_total,
        "attempts": document.attempts,
        "parent_id": document.parent_id,
        "restricted_to": sorted(g.name for g in document.restricted_to_groups.all()),
        "size": document.size,
        "error": document.error,
        "elapsed_s": elapsed,
        "created_at": document.created_at.isoformat(),
    }
