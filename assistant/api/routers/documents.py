"""Documents: upload, list with status and progress, download, delete, re-index."""

import hashlib
from typing import Any

from django.conf import settings
from django.http import FileResponse, HttpRequest
from ninja import File, Query, Router, Status, UploadedFile

from assistant.accounts.models import Role
from assistant.api.auth import WRITE, caller
from assistant.api.errors import ApiError
from assistant.api.idempotent import IDEMPOTENCY_KEY, idempotent
from assistant.api.lookups import collection_for, document_for, hidden_documents, paginate
from assistant.api.schemas import DocumentOut, DocumentPage, ErrorOut, UploadOut
from ingest import originals, selectors, services
from ingest.models import Document

router = Router(tags=["documents"])
FILES = File(..., description="One or many files (the form field may repeat).")
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 422: ErrorOut}


def document_out(document: Document) -> dict[str, Any]:
    return {**selectors.document_as_dict(document), "collection_id": document.collection_id}


@router.get("/collections/{collection_id}/documents", response={200: DocumentPage, **ERRORS})
def documents_list(
    request: HttpRequest,
    collection_id: int,
    status: Document.Status | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> Any:
    """The collection's documents, newest first, with status and progress."""
    user = caller(request)
    collection = collection_for(user=user, collection_id=collection_id)
    rows = selectors.collection_documents(collection=collection).exclude(
        pk__in=hidden_documents(user=user, collection=collection)
    )
    if status is not None:
        rows = rows.filter(status=status)
    return paginate(rows, limit=limit, offset=offset, convert=lambda page: [document_out(d) for d in page])


def _too_large(name: str) -> ApiError:
    limit = settings.MAX_UPLOAD_BYTES
    return ApiError(
        413,
        "upload_too_large",
        f"'{name}' is larger than the upload limit of {limit // (1024 * 1024)} MB ({limit} bytes).",
        limit_bytes=limit,
    )


def _fingerprint(collection_id: int, files: list[UploadedFile]) -> list[Any]:
    described: list[Any] = [collection_id]
    for f in files:
        digest = hashlib.sha256()
        for block in f.chunks():
            digest.update(block)
        f.seek(0)
        described.append([f.name, digest.hexdigest()])
    return described


@router.post("/collections/{collection_id}/documents", response={201: UploadOut, **ERRORS}, auth=WRITE)
def documents_upload(
    request: HttpRequest,
    collection_id: int,
    files: list[UploadedFile] = FILES,
    idempotency_key: str | None = IDEMPOTENCY_KEY,
) -> Any:
    """Upload one or many files; each is queued for ingestion.

    The same bytes already in the collection are not stored again (``duplicate``).
    A file over the limit fails the whole request with 413 and nothing is stored.
    """
    user = caller(request)
    collection = collection_for(user=user, collection_id=collection_id, role=Role.WRITE)
    if not files:
        raise ApiError(422, "validation_error", "files: send at least one file.")
    for f in files:
        if f.size is not None and f.size > settings.MAX_UPLOAD_BYTES:
            raise _too_large(f.name or "upload")

    def upload() -> tuple[int, dict[str, Any]]:
        try:
            outcomes = services.documents_upload_many(
                collection=collection, files=[(f.name or "upload", f) for f in files], user=user, all_or_nothing=True
            )
        except services.UploadRejected as exc:
            raise _too_large(exc.name) from exc
        results = [
            {"document": document_out(o.result.document), "duplicate": o.result.duplicate}
            for o in outcomes
            if o.result is not None
        ]
        return 201, {"documents": results}

    return idempotent(
        user=user,
        key=idempotency_key,
        scope="upload",
        request=lambda: _fingerprint(collection.pk, files),
        run=upload,
        schema=UploadOut,
    )


@router.get("/documents/{document_id}", response={200: DocumentOut, **ERRORS})
def documents_get(request: HttpRequest, document_id: int) -> Any:
    return document_out(document_for(user=caller(request), document_id=document_id))


@router.get(
    "/documents/{document_id}/download",
    response={200: None, **ERRORS},
    openapi_extra={
        "responses": {
            200: {
                "description": "The original file, as uploaded.",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def documents_download(request: HttpRequest, document_id: int) -> Any:
    """The original file as it was uploaded."""
    document = document_for(user=caller(request), document_id=document_id)
    try:
        stored = originals.original_open(document.file.name)
    except FileNotFoundError as exc:
        raise ApiError(404, "not_found", "The original file of this document is no longer stored.") from exc
    # The stored name is opaque; the download carries the uploaded name.
    return FileResponse(stored, as_attachment=True, filename=document.name, content_type="application/octet-stream")


@router.delete("/documents/{document_id}", response={204: None, **ERRORS}, auth=WRITE)
def documents_delete(request: HttpRequest, document_id: int) -> Any:
    document = document_for(user=caller(request), document_id=document_id, role=Role.WRITE)
    services.document_delete(document=document, user=caller(request))
    return Status(204, None)


@router.post("/documents/{document_id}/reindex", response={202: DocumentOut, **ERRORS}, auth=WRITE)
def documents_reindex(request: HttpRequest, document_id: int) -> Any:
    """Parse, chunk and embed the document again from its stored original."""
    document = document_for(user=caller(request), document_id=document_id, role=Role.WRITE)
    return Status(202, document_out(services.document_reprocess(document=document, user=caller(request))))
