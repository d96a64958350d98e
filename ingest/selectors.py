"""Read-side queries on collections and documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from ingest.models import Collection, Document, RemovedDocument


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
    # Each document keeps the number of passages it was indexed with: summing them
    # stays one pass over the documents however many passages a collection holds.
    counts = documents.aggregate(
        total=Count("id"),
        chunks=Sum("chunk_count", filter=Q(status=Document.Status.READY)),
        **{status: Count("id", filter=Q(status=status)) for status in Document.Status.values},
    )
    counts["chunks"] = counts["chunks"] or 0
    return counts


# The orders the portal's documents table offers; each is an index walk (``Document.Meta.indexes``).
DOCUMENT_SORTS: dict[str, tuple[str, ...]] = {
    "-time": ("-created_at", "-id"),
    "time": ("created_at", "id"),
    "name": ("name", "id"),
    "-name": ("-name", "-id"),
    "size": ("size", "id"),
    "-size": ("-size", "-id"),
    "status": ("status", "created_at", "id"),
    "-status": ("-status", "-created_at", "-id"),
}
DOCUMENTS_PER_PAGE = 50


@dataclass(frozen=True)
class DocumentsPage:
    """One page of a collection's documents, with what selected it."""

    documents: list[Document]
    number: int
    pages: int
    total: int  # documents matching the filters
    per_page: int
    sort: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number, "pages": self.pages, "total": self.total, "per_page": self.per_page,
            "sort": self.sort,
        }  # fmt: skip


def documents_page(
    *,
    documents: QuerySet[Document],
    status: str = "",
    file_type: str = "",
    search: str = "",
    sort: str = "-time",
    page: int = 1,
    per_page: int = DOCUMENTS_PER_PAGE,
) -> DocumentsPage:
    """One page of ``documents`` (the ones the viewer may see), filtered and sorted.

    A fixed number of queries whatever the size of the collection (the count, the
    page, the groups of its rows), each walking an index in the order asked for:
    nothing sorts or loads every document. A page past the end is the last page.
    """
    matching = documents
    if status in Document.Status.values:
        matching = matching.filter(status=status)
    if file_type:
        matching = matching.filter(file_type=file_type)
    if search.strip():
        matching = matching.filter(name__icontains=search.strip())
    sort = sort if sort in DOCUMENT_SORTS else "-time"
    total = matching.count()
    pages = max(1, -(-total // per_page))
    number = min(max(1, page), pages)
    start = (number - 1) * per_page
    rows = list(
        matching.select_related("uploaded_by")
        .prefetch_related("restricted_to_groups")
        .order_by(*DOCUMENT_SORTS[sort])[start : start + per_page]
    )
    return DocumentsPage(documents=rows, number=number, pages=pages, total=total, per_page=per_page, sort=sort)


def document_types(*, documents: QuerySet[Document]) -> list[str]:
    """The detected file types among ``documents``, for a filter."""
    found = documents.exclude(file_type="").order_by("file_type").values_list("file_type", flat=True).distinct()
    return list(found)


def document_versions(*, document: Document, documents: QuerySet[Document]) -> dict[str, list[Any]]:
    """The versions around ``document``: ``newer`` pending ones, ``older`` still serving, ``replaced`` gone.

    ``documents``: those the viewer may see; a version they may not see is left out.
    A replaced version's row is deleted once the new one is ready (``pipeline``);
    what remains of it is its ``RemovedDocument`` record (its id and when).
    """
    newer, older = [], []
    seen = {document.pk}
    current: Document | None = document
    while current is not None:
        following = documents.filter(supersedes_id=current.pk).exclude(pk__in=seen).order_by("created_at").first()
        if following is not None:
            newer.append(following)
            seen.add(following.pk)
        current = following
    current = document
    while current is not None and current.supersedes_id and current.supersedes_id not in seen:
        current = documents.filter(pk=current.supersedes_id).first()
        if current is not None:
            older.append(current)
            seen.add(current.pk)
    replaced = []
    replaced_by = (older[-1] if older else document).pk
    for _ in range(50):  # a long history is cut, never walked without end
        record = RemovedDocument.objects.filter(replaced_by_id=replaced_by).order_by("-removed_at").first()
        if record is None:
            break
        replaced.append(record)
        replaced_by = record.document_id
    return {"newer": newer, "older": older, "replaced": replaced}


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
