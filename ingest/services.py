"""Write-side operations on collections and documents: create, upload, restrict, delete.

Every way in (portal, Django admin, ``manage.py ingest``, the API, the evaluation
harness) goes through these functions, so an upload follows the same rules wherever
it comes from. What happens to an upload next is in ``pipeline.py``; the indexes are
kept in ``indexes.py``; messages to the workers are sent by ``queue.py``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django import db
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from assistant.accounts.models import Role
from assistant.accounts.selectors import documents_visible_to, user_can
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.replica import fence_after_commit
from ingest import claims, originals, queue
from ingest.models import IN_PROGRESS, Collection, Document, RemovedDocument
from ingest.vector_store import vector_store

logger = logging.getLogger(__name__)

Status = Document.Status


class UploadRejected(Exception):
    """An upload refused before it was stored (too large, unreadable); ``name``: which file."""

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class CollectionNameTaken(ValueError):
    """Collection names are unique across the instance."""


@dataclass(frozen=True)
class UploadResult:
    document: Document
    duplicate: bool


def collection_create(*, name: str, description: str = "", user: Any = None) -> Collection:
    """Create a collection; its creator manages it."""
    name = name.strip()
    if not name:
        raise ValueError("A collection needs a name.")
    try:
        with transaction.atomic():  # a savepoint: a taken name must not spoil the caller's transaction
            collection = Collection.objects.create(name=name, description=description, created_by=user)
    except IntegrityError as exc:
        raise CollectionNameTaken(f"A collection named '{name}' already exists.") from exc
    audit_record(action=AuditEvent.Action.COLLECTION_CREATED, actor=user, collection=collection, target=collection)
    return collection


def collection_get_or_create(*, name: str, user: Any = None) -> tuple[Collection, bool]:
    existing = Collection.objects.filter(name=name.strip()).first()
    if existing:
        return existing, False
    return collection_create(name=name, user=user), True


def collection_delete(*, collection: Collection, user: Any = None) -> None:
    """Delete a collection, its documents' files and its index (``user``: who did, for the audit log)."""
    collection_id = collection.pk
    stored = [d.file.name for d in collection.documents.all() if d.file.name]
    with transaction.atomic():
        audit_record(
            action=AuditEvent.Action.COLLECTION_DELETED, actor=user, collection=collection, target=collection,
            details={"documents": len(stored)},
        )  # fmt: skip
        collection.delete()
    originals.originals_delete(stored)
    vector_store().drop(collection_id=collection_id)


def _spool(fileobj: IO[bytes]) -> tuple[tempfile.SpooledTemporaryFile[bytes], str, int]:
    """Copy an upload aside while hashing it, refusing it once it passes the size limit."""
    digest = hashlib.sha256()
    size = 0
    # Closed by the caller (it is returned), hence no context manager here.
    spooled: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    limit = settings.MAX_UPLOAD_BYTES
    while block := fileobj.read(1024 * 1024):
        size += len(block)
        if size > limit:
            spooled.close()
            raise UploadRejected(f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB.")
        digest.update(block)
        spooled.write(block)
    spooled.seek(0)
    return spooled, digest.hexdigest(), size


def document_upload(
    *,
    collection: Collection,
    name: str,
    fileobj: IO[bytes],
    user: Any = None,
    enqueue: bool = True,
    parent: Document | None = None,
    restrict_to_groups: Sequence[Group] = (),
    from_source: bool = False,
    supersedes: Document | None = None,
) -> UploadResult:
    """Store an uploaded file and queue it for ingestion.

    The same bytes uploaded twice to one collection give one document; the second
    upload returns it with ``duplicate=True`` and queues nothing (and leaves its
    restriction as it is). Different bytes under the name of an existing top-level
    document that ``user`` can see are a new version of it: the old version keeps
    answering questions until the new one is ready.

    When the same bytes are only in a document hidden from ``user``, the upload is
    stored as a document of its own (``separate_copy``), exactly as a fresh upload
    would be: answering "duplicate" would hand the uploader the hidden document's id,
    name and dates, and would confirm that the organisation holds this very file.

    ``restrict_to_groups`` limits who sees the document (see
    ``assistant.accounts.selectors``). It is stored in the transaction that creates
    the row, so the document is never visible unrestricted. A file found inside
    another (``parent``) always takes its parent's restriction; a new version takes
    its predecessor's unless a restriction is given.

    ``from_source``: the file comes from a connector, which keeps its own record of
    which source item is which document. It always gets a document of its own
    (another with the same bytes or name is left alone: it may be another file of
    the share, restricted differently), is a new version only of ``supersedes``, and
    is restricted exactly to ``restrict_to_groups``.
    """
    name = Path(name).name or "upload"
    spooled, content_hash, size = _spool(fileobj)
    with spooled:
        for _attempt in range(3):
            if from_source:
                existing = None
                hidden = Document.objects.filter(
                    collection=collection, content_hash=content_hash, separate_copy=False
                ).exists()
            else:
                existing, hidden = _same_bytes(
                    collection=collection, content_hash=content_hash, user=user, parent=parent
                )
            if existing is not None:
                return _uploaded(
                    UploadResult(document=existing, duplicate=True), name=name, user=user, collection=collection
                )
            document = _stored(
                collection=collection, name=name, spooled=spooled, content_hash=content_hash, size=size, user=user,
                parent=parent, restrict_to_groups=restrict_to_groups, separate_copy=hidden, enqueue=enqueue,
                from_source=from_source, supersedes=supersedes,
            )  # fmt: skip
            if document is not None:
                return _uploaded(
                    UploadResult(document=document, duplicate=False), name=name, user=user, collection=collection
                )
            # Another upload of the same bytes won the race: look again at what is there.
            spooled.seek(0)
    raise UploadRejected("The file could not be stored: the same file is being uploaded at this moment; retry.")


def _same_bytes(
    *, collection: Collection, content_hash: str, user: Any, parent: Document | None
) -> tuple[Document | None, bool]:
    """(the document these bytes duplicate, whether they are only in one hidden from ``user``)."""
    same = Document.objects.filter(collection=collection, content_hash=content_hash)
    if parent is not None or user is None:
        # A file found inside another is stored once, whoever uploaded the outer file;
        # it is no one's answer to read. An operator at the shell sees everything.
        return same.order_by("separate_copy", "id").first(), False
    visible = documents_visible_to(user=user, collection=collection).filter(content_hash=content_hash)
    found = visible.order_by("separate_copy", "id").first()
    return found, found is None and same.exists()


def _stored(
    *,
    collection: Collection,
    name: str,
    spooled: IO[bytes],
    content_hash: str,
    size: int,
    user: Any,
    parent: Document | None,
    restrict_to_groups: Sequence[Group],
    separate_copy: bool,
    enqueue: bool,
    from_source: bool = False,
    supersedes: Document | None = None,
) -> Document | None:
    """The new document row and its file, or None if the same bytes were stored meanwhile."""
    previous = supersedes
    if parent is None and not from_source:
        # Only a document the uploader can see is replaced: a writer who cannot
        # see a restricted document must neither learn of it nor overwrite it.
        previous = (
            documents_visible_to(user=user, collection=collection)
            .filter(name=name[:500], parent=None)
            .exclude(status=Status.FAILED)
            .order_by("-created_at", "-id")
            .first()
        )
    document = Document(
        collection=collection,
        name=name[:500],
        content_hash=content_hash,
        separate_copy=separate_copy,
        size=size,
        uploaded_by=user,
        parent=parent,
        supersedes=previous,
    )
    try:
        with transaction.atomic():
            _store_original(document, name, spooled)
            document.save()
            groups = (
                list(restrict_to_groups)
                if from_source
                else _inherited_restriction(parent=parent, previous=previous, given=restrict_to_groups)
            )
            if groups:
                document.restricted_to_groups.set(groups)
            claims.document_events_record(
                document_ids=[document.pk], status=Status.QUEUED,
                message=(
                    f"found in document {parent.pk}"
                    if parent is not None
                    else ("from a connector" if from_source else "uploaded")
                ),
            )  # fmt: skip
            if enqueue:
                transaction.on_commit(lambda: queue.document_enqueue(document.pk))
    except IntegrityError:
        originals.originals_delete([document.file.name])
        return None
    return document


def _store_original(document: Document, name: str, spooled: IO[bytes]) -> None:
    """Write the uploaded bytes to the originals' storage; a refusal (a full disk, a failing bucket) has a reason."""
    try:
        originals.original_save(document=document, name=name, fileobj=spooled)
    except originals.OriginalRefused as exc:
        raise UploadRejected(str(exc), name=name) from exc


@dataclass(frozen=True)
class UploadOutcome:
    """One file of a multi-file upload: ``result`` when stored, else ``error``."""

    name: str
    result: UploadResult | None = None
    error: str = ""


def documents_upload_many(
    *,
    collection: Collection,
    files: Iterable[tuple[str, IO[bytes] | Path]],
    user: Any,
    restrict_to_groups: Sequence[Group] = (),
    all_or_nothing: bool = False,
    enqueue: bool = True,
) -> list[UploadOutcome]:
    """Upload many files in one transaction, then queue the new ones together (few messages, batches).

    The one upload path of every surface (portal, API, ``manage.py ingest``, the
    evaluation harness), so that what a reply may say about a file (a duplicate of a
    visible document, or a fresh upload) cannot drift between them. A file is an open
    stream or a path, opened only while it is stored. A file that is refused (too
    large) is reported in its outcome; with ``all_or_nothing`` it raises
    ``UploadRejected`` instead and nothing is stored. ``enqueue=False`` leaves the new
    documents queued for the caller to process (``pipeline.documents_process_here``).
    """
    outcomes: list[UploadOutcome] = []
    queued: list[int] = []
    with transaction.atomic():
        for name, source in files:
            try:
                # A savepoint: a refused file leaves the others stored.
                opened = open(source, "rb") if isinstance(source, Path) else nullcontext(source)  # noqa: SIM115
                with transaction.atomic(), opened as fileobj:
                    result = document_upload(
                        collection=collection, name=name or "upload", fileobj=fileobj, user=user, enqueue=False,
                        restrict_to_groups=restrict_to_groups,
                    )  # fmt: skip
            except UploadRejected as exc:
                if all_or_nothing:
                    raise UploadRejected(str(exc), name=name or "upload") from exc
                outcomes.append(UploadOutcome(name=name or "upload", error=str(exc)))
                continue
            outcomes.append(UploadOutcome(name=name or "upload", result=result))
            if not result.duplicate:
                queued.append(result.document.pk)
        if enqueue:
            # Sent once the rows are committed: a worker must find what it is sent.
            transaction.on_commit(lambda: queue.documents_enqueue(queued))
    return outcomes


def _uploaded(result: UploadResult, *, name: str, user: Any, collection: Collection) -> UploadResult:
    """Audit an upload a person made; files found inside it (attachments, archive
    members) are part of that upload and are not recorded one by one."""
    document = result.document
    if not result.duplicate:
        # Read-your-writes on a read replica: the uploader's searches follow the primary
        # until the replica has this upload (a new version stops the old one when ready).
        fence_after_commit(user_ids=[getattr(user, "pk", None)])
    if document.parent_id is None:
        audit_record(
            action=AuditEvent.Action.DOCUMENT_UPLOADED,
            actor=user,
            collection=collection,
            target=document,
            details={
                "name": name,
                "size": document.size,
                "sha256": document.content_hash,
                "duplicate": result.duplicate,
            },
        )
    return result


def _inherited_restriction(
    *, parent: Document | None, previous: Document | None, given: Sequence[Group]
) -> list[Group]:
    """The groups a new document is restricted to (see ``document_upload``).

    The source row is locked first: ``document_restrict`` locks the same row, so a
    restriction changed meanwhile is either seen here or applied to the new row too.
    """
    source = parent if parent is not None else (None if given else previous)
    if source is None:
        return list(given)
    Document.objects.select_for_update().filter(pk=source.pk).first()
    return list(Group.objects.filter(restricted_documents=source.pk))


def document_restrict(*, document: Document, groups: Sequence[Group], actor: Any = None) -> list[int]:
    """Restrict a document to ``groups`` (empty: everyone who may read the collection).

    The restriction also applies to everything that came out of the document
    (attachments, archive members, at any depth) and to new versions of it still
    being processed, so none of them shows what the document hides. Nothing is
    re-embedded: retrieval reads restrictions for every question. ``actor``, when
    given, must manage the collection. Returns the ids of the documents changed.
    """
    if actor is not None and not user_can(user=actor, collection=document.collection, role=Role.MANAGE):
        raise PermissionDenied("You do not manage this collection.")
    through = Document.restricted_to_groups.through
    with transaction.atomic():
        # Locked first: the processing of this document creates its attachments under
        # the same lock, so they are either found below or created with the new groups.
        if Document.objects.select_for_update().filter(pk=document.pk).first() is None:
            raise Document.DoesNotExist(f"Document {document.pk} no longer exists.")
        ids = [document.pk]
        frontier = [document.pk]
        while frontier:
            frontier = list(
                Document.objects.select_for_update()
                .filter(db.models.Q(parent_id__in=frontier) | db.models.Q(supersedes_id__in=frontier))
                .exclude(pk__in=ids)
                .values_list("pk", flat=True)
            )
            ids.extend(frontier)
        through.objects.filter(document_id__in=ids).delete()
        through.objects.bulk_create([through(document_id=d, group_id=g.pk) for d in ids for g in set(groups)])
        audit_record(
            action=AuditEvent.Action.DOCUMENT_RESTRICTED,
            actor=actor,
            collection=document.collection,
            target=document,
            details={"groups": sorted(g.name for g in set(groups)), "documents": ids},
        )
        fence_after_commit(user_ids=[getattr(actor, "pk", None)])
    return ids


def document_delete(*, document: Document, user: Any = None) -> None:
    """Delete a document: its chunks stop being retrievable at once, then file and vectors go.

    ``user`` is who deleted it, for the audit log.
    """
    collection_id = document.collection_id
    chunk_ids = list(document.chunks.values_list("id", flat=True))
    file_name = document.file.name
    with transaction.atomic():
        audit_record(
            action=AuditEvent.Action.DOCUMENT_DELETED, actor=user, collection=document.collection, target=document,
            details={"name": document.name, "sha256": document.content_hash, "chunks": len(chunk_ids)},
        )  # fmt: skip
        document_retire(document=document)
        fence_after_commit(user_ids=[getattr(user, "pk", None)])
    originals.originals_delete([file_name])
    vector_store().remove(collection_id=collection_id, ids=chunk_ids)


def document_retire(*, document: Document, replaced_by_id: int | None = None) -> None:
    """Delete a document's row and those of the files found inside it, remembering who could see them.

    ``replaced_by_id``: the new version that replaces it. Call it in a transaction;
    files and index entries are the caller's to remove.
    """
    for removed in _with_descendants(document):
        _remember_removed(removed, replaced_by_id=replaced_by_id if removed is document else None)
    document.delete()


def _with_descendants(document: Document) -> list[Document]:
    """The document and what came out of it (attachments, archive members: deleted with it)."""
    found = [document]
    frontier = [document.pk]
    while frontier:
        children = list(Document.objects.filter(parent_id__in=frontier))
        found += children
        frontier = [c.pk for c in children]
    return found


def _remember_removed(document: Document, *, replaced_by_id: int | None = None) -> None:
    """Record who could see a document about to be deleted or replaced.

    Old answers that cited it stay withheld from whoever could not see it
    (``assistant.accounts.selectors.cited_documents_hidden_from``).
    """
    removed, _ = RemovedDocument.objects.update_or_create(
        document_id=document.pk,
        defaults={
            "collection_id": document.collection_id,
            "replaced_by_id": replaced_by_id,
            "uploaded_by_id": document.uploaded_by_id,
        },
    )
    removed.restricted_to_groups.set(document.restricted_to_groups.all())


def collection_update(
    *, collection: Collection, name: str | None = None, description: str | None = None, user: Any = None
) -> Collection:
    """Rename a collection or change its description (``user``: who did, for the audit log)."""
    previous = {"name": collection.name, "description": collection.description}
    if name is not None:
        name = name.strip()
        if not name:
            raise ValueError("A collection needs a name.")
        collection.name = name
    if description is not None:
        collection.description = description
    changed = {k: getattr(collection, k) for k, v in previous.items() if getattr(collection, k) != v}
    try:
        with transaction.atomic():
            collection.save()
            if changed:
                audit_record(
                    action=AuditEvent.Action.COLLECTION_UPDATED, actor=user, collection=collection,
                    target=collection, details={"previous": {k: previous[k] for k in changed}, **changed},
                )  # fmt: skip
    except IntegrityError as exc:
        raise CollectionNameTaken(f"A collection named '{name}' already exists.") from exc
    return collection


def document_reprocess(*, document: Document, user: Any = None) -> Document:
    """Parse, chunk and embed a document again from its stored original (a retry, a re-index).

    The document is queued again: until the worker has replaced its chunks (in one
    transaction, see ``pipeline._BatchRun._store``) it is not ready and is not searched. A
    document being processed right now is left to that run. ``user``: who asked, for
    the audit log.
    """
    with transaction.atomic():
        updated = claims.documents_status_set(
            Document.objects.filter(pk=document.pk).exclude(status__in=IN_PROGRESS),
            Status.QUEUED,
            message="queued again to be re-indexed",
            attempts=0,
            error="",
            heartbeat_at=None,
        )
        if updated:
            audit_record(
                action=AuditEvent.Action.DOCUMENT_REINDEXED, actor=user, collection=document.collection,
                target=document, details={"name": document.name, "previous_status": document.status},
            )  # fmt: skip
            transaction.on_commit(lambda: queue.document_enqueue(document.pk))
    document.refresh_from_db()
    return document
