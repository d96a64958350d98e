"""Write-side operations on collections and documents.

Every way in (portal, Django admin, ``manage.py ingest``, the API) goes through these
functions, so an upload follows the same rules wherever it comes from.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
from django import db
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.selectors import documents_visible_to, user_can
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from ingest import index, lexical
from ingest.models import FINISHED, IN_PROGRESS, Chunk, Collection, Document, RemovedDocument
from ingest.parsers import ParseError, parse_file

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
    stored = [(d.file.storage, d.file.name) for d in collection.documents.all() if d.file.name]
    with transaction.atomic():
        audit_record(
            action=AuditEvent.Action.COLLECTION_DELETED, actor=user, collection=collection, target=collection,
            details={"documents": len(stored)},
        )  # fmt: skip
        collection.delete()
    for storage, name in stored:
        storage.delete(name)
    index.index_delete(collection_id=collection_id)
    lexical.lexical_delete(collection_id=collection_id)


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
    """
    name = Path(name).name or "upload"
    spooled, content_hash, size = _spool(fileobj)
    with spooled:
        for _attempt in range(3):
            existing, hidden = _same_bytes(collection=collection, content_hash=content_hash, user=user, parent=parent)
            if existing is not None:
                return _uploaded(
                    UploadResult(document=existing, duplicate=True), name=name, user=user, collection=collection
                )
            document = _stored(
                collection=collection, name=name, spooled=spooled, content_hash=content_hash, size=size, user=user,
                parent=parent, restrict_to_groups=restrict_to_groups, separate_copy=hidden, enqueue=enqueue,
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
) -> Document | None:
    """The new document row and its file, or None if the same bytes were stored meanwhile."""
    previous = None
    if parent is None:
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
            document.file.save(name, File(spooled), save=False)
            document.save()
            groups = _inherited_restriction(parent=parent, previous=previous, given=restrict_to_groups)
            if groups:
                document.restricted_to_groups.set(groups)
            if enqueue:
                transaction.on_commit(lambda: _enqueue(document.pk))
    except IntegrityError:
        document.file.delete(save=False)
        return None
    return document


@dataclass(frozen=True)
class UploadOutcome:
    """One file of a multi-file upload: ``result`` when stored, else ``error``."""

    name: str
    result: UploadResult | None = None
    error: str = ""


def documents_upload_many(
    *,
    collection: Collection,
    files: Sequence[tuple[str, IO[bytes]]],
    user: Any,
    restrict_to_groups: Sequence[Group] = (),
    all_or_nothing: bool = False,
) -> list[UploadOutcome]:
    """Upload many files, then queue the new ones together (few messages, batches for the worker).

    The one upload path of the portal and the API, so that what a reply may say
    about a file (a duplicate of a visible document, or a fresh upload) cannot drift
    between them. A file that is refused (too large) is reported in its outcome;
    with ``all_or_nothing`` it raises ``UploadRejected`` instead and nothing is stored.
    """
    outcomes: list[UploadOutcome] = []
    queued: list[int] = []
    with transaction.atomic():
        for name, fileobj in files:
            try:
                with transaction.atomic():  # a savepoint: a refused file leaves the others stored
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
        # Sent once the rows are committed: a worker must find what it is sent.
        transaction.on_commit(lambda: documents_enqueue(queued))
    return outcomes


def _uploaded(result: UploadResult, *, name: str, user: Any, collection: Collection) -> UploadResult:
    """Audit an upload a person made; files found inside it (attachments, archive
    members) are part of that upload and are not recorded one by one."""
    document = result.document
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
    return ids


def _enqueue(document_id: int) -> None:
    from ingest.tasks import process_document

    process_document.delay(document_id)


def documents_enqueue(document_ids: Sequence[int]) -> None:
    """Send many uploaded documents to the workers with few messages.

    Small files of one collection travel in groups (one message per batch the
    worker would form anyway); a large file gets a message of its own, so that a
    worker is free to take it while another works through the small ones. Call it
    once the uploads are committed: a worker must find the rows it is sent.
    """
    from ingest.tasks import process_documents

    rows = Document.objects.filter(pk__in=document_ids, status=Status.QUEUED).values_list("pk", "collection_id", "size")
    groups: dict[int, list[int]] = {}
    sizes: dict[int, int] = {}
    per_batch, max_bytes = settings.INGEST_BATCH_DOCUMENTS, settings.INGEST_BATCH_MAX_BYTES
    for pk, collection_id, size in sorted(rows):
        if size > max_bytes or per_batch <= 1:
            _enqueue(pk)
            continue
        group = groups.setdefault(collection_id, [])
        if len(group) >= per_batch or sizes.get(collection_id, 0) + size > max_bytes:
            process_documents.delay(group)
            group = groups[collection_id] = []
            sizes[collection_id] = 0
        group.append(pk)
        sizes[collection_id] = sizes.get(collection_id, 0) + size
    for group in groups.values():
        if group:
            process_documents.delay(group)


def _set_status(document_id: int, status: str, **fields: Any) -> None:
    Document.objects.filter(pk=document_id).update(status=status, updated_at=timezone.now(), **fields)


def document_fail(*, document_id: int, reason: str) -> None:
    _set_status(document_id, Status.FAILED, error=reason[:2000], finished_at=timezone.now(), heartbeat_at=None)


def _claim(document_id: int) -> Document | None:
    """Take a document for processing, or return None if it is not ours to take.

    Under a row lock: finished documents are left alone, a document another worker
    is visibly working on (fresh heartbeat) is left to it, and a document that has
    already been started ``INGEST_MAX_ATTEMPTS`` times fails instead of being
    retried forever (a file that kills every worker that touches it).
    """
    now = timezone.now()
    with transaction.atomic():
        document = Document.objects.select_for_update().filter(pk=document_id).first()
        if document is None or document.status in FINISHED:
            return None
        stall = timedelta(seconds=settings.INGEST_STALL_AFTER_S)
        if document.status in IN_PROGRESS and document.heartbeat_at and now - document.heartbeat_at < stall:
            return None
        if document.attempts >= settings.INGEST_MAX_ATTEMPTS:
            document_fail(
                document_id=document_id,
                reason=(
                    f"Processing was interrupted {document.attempts} times without finishing (the worker was "
                    "killed, ran out of memory or lost its connection); giving up on this file."
                ),
            )
            return None
        document.attempts += 1
        document.status = Status.PARSING
        document.heartbeat_at = now
        document.started_at = now
        document.finished_at = None
        document.error = ""
        document.progress_done = document.progress_total = 0
        document.save()
        return document


def _release(document_id: int) -> None:
    """Hand a claimed document back to the queue (a transient error will retry it).

    The attempt is given back too: an outage of the database is not the file's fault
    and must not use up the attempts that protect against files that kill workers.
    """
    Document.objects.filter(pk=document_id, status__in=IN_PROGRESS, attempts__gt=0).update(
        status=Status.QUEUED, heartbeat_at=None, updated_at=timezone.now(), attempts=F("attempts") - 1
    )


@contextmanager
def _heartbeat(document_ids: list[int]) -> Iterator[None]:
    """Touch the documents' heartbeat from a side thread while the work runs."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.INGEST_HEARTBEAT_S):
                Document.objects.filter(pk__in=document_ids, status__in=IN_PROGRESS).update(heartbeat_at=timezone.now())
        except Exception:  # a missed beat is not worth failing the documents for
            logger.warning("Heartbeat for documents %s stopped", document_ids[:10], exc_info=True)
        finally:
            db.connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{document_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    if seconds < 7200:
        return f"{seconds / 60:g} minutes"
    return f"{seconds / 3600:g} hours"


def _caused_by_time_limit(exc: BaseException) -> bool:
    """True if Celery's soft time limit interrupted the work, however it was wrapped.

    The limit arrives as an exception raised wherever the code happened to be, and a
    parser may have wrapped it in its own error on the way out.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SoftTimeLimitExceeded):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _depth(document: Document) -> int:
    """How many documents (archives, e-mails) ``document`` was found inside."""
    depth, parent_id = 0, document.parent_id
    while parent_id is not None:
        depth += 1
        parent_id = Document.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return depth


def text_digest(text: str) -> str:
    """The key under which an embedded text's vector can be found again."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _known_vectors(collection_id: int, digests: set[str]) -> dict[str, np.ndarray]:
    """Vectors the collection already holds for these texts, by digest."""
    from ingest.embedding import from_bytes

    found: dict[str, np.ndarray] = {}
    wanted = sorted(digests)
    for start in range(0, len(wanted), 500):
        rows = Chunk.objects.filter(collection_id=collection_id, text_hash__in=wanted[start : start + 500])
        for digest, embedding in rows.values_list("text_hash", "embedding"):
            found.setdefault(digest, from_bytes(embedding))
    return found


def _claim_companions(document: Document, preferred: Sequence[int] = ()) -> list[Document]:
    """Claim more small queued documents of the same collection to process with ``document``.

    ``preferred`` (the rest of the task's own batch) comes first, then whatever
    else is queued in the collection, oldest first.

    Embedding many short texts in one call is several times faster per text than
    one call each (the model works in batches), and one transaction and one index
    write per batch replace one per file. A folder of notes therefore goes through
    in batches of up to ``INGEST_BATCH_DOCUMENTS`` files, while a large file is
    processed alone. Claims take rows other workers have not locked, so workers
    never wait on each other; each companion's own message later finds it finished
    (or in progress) and does nothing.
    """
    limit = settings.INGEST_BATCH_DOCUMENTS - 1
    max_bytes = settings.INGEST_BATCH_MAX_BYTES
    if limit <= 0 or document.size > max_bytes:
        return []
    now = timezone.now()
    with transaction.atomic():
        claimable = (
            Document.objects.select_for_update(skip_locked=True)
            .filter(
                collection_id=document.collection_id,
                status=Status.QUEUED,
                size__lte=max_bytes,
                attempts__lt=settings.INGEST_MAX_ATTEMPTS,
            )
            .exclude(pk=document.pk)
            .order_by("pk")
        )
        candidates = list(claimable.filter(pk__in=list(preferred)[: limit * 4]).values_list("pk", "size"))
        candidates += list(claimable.exclude(pk__in=list(preferred)).values_list("pk", "size")[: limit * 4])
        ids: list[int] = []
        total = document.size
        for pk, size in candidates:
            if len(ids) >= limit or total + size > max_bytes:
                break
            ids.append(pk)
            total += size
        if not ids:
            return []
        Document.objects.filter(pk__in=ids, status=Status.QUEUED).update(
            status=Status.PARSING,
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
            error="",
            progress_done=0,
            progress_total=0,
            updated_at=now,
        )
    return list(Document.objects.filter(pk__in=ids, status=Status.PARSING).order_by("pk"))


def document_process(*, document_id: int, enqueue_children: bool = True, companions: bool = True) -> None:
    """Parse, chunk and embed one document (see ``documents_process``)."""
    documents_process(document_ids=[document_id], enqueue_children=enqueue_children, companions=companions)


def documents_process(*, document_ids: Sequence[int], enqueue_children: bool = True, companions: bool = True) -> None:
    """Parse, chunk and embed documents; replace their chunks and index them.

    The first document still to do is claimed; if it is small, the others of
    ``document_ids`` and then other queued documents of its collection join it as
    one batch (see ``_claim_companions``). ``companions=False`` processes the first
    document alone.

    Idempotent: a finished document is left alone, and a re-run replaces the chunks
    in one transaction, so running it twice leaves exactly one set. A bad file ends
    ``failed`` with a reason a person can read, and the rest of its batch goes on; a
    transient database error hands the batch back to the queue and re-raises for
    the task to retry. Files found inside a document (attachments, archive members)
    become documents of their own, queued unless ``enqueue_children`` is off (the
    caller then processes them itself).
    """
    # A cheap look first: a message often finds its documents done by another batch.
    todo = set(Document.objects.filter(pk__in=document_ids).exclude(status__in=FINISHED).values_list("pk", flat=True))
    ordered = [pk for pk in document_ids if pk in todo]
    for position, document_id in enumerate(ordered):
        document = _claim(document_id)
        if document is None:
            continue
        rest = ordered[position + 1 :]
        batch = [document, *(_claim_companions(document, rest) if companions else [])]
        _BatchRun(batch, enqueue_children=enqueue_children).run()
        # What the batch could not take (large files, another collection) is sent on.
        left = set(Document.objects.filter(pk__in=rest, status=Status.QUEUED).values_list("pk", flat=True))
        for pk in rest:
            if pk in left:
                _enqueue(pk)
        return


@dataclass
class _Prepared:
    document: Document
    drafts: list[Any]
    attachments: list[Any]
    timings: dict[str, float]
    offset: int = 0  # where this document's chunks start in the batch


class _BatchRun:
    """One batch of claimed documents: parse each, embed all chunks at once, store together."""

    def __init__(self, documents: list[Document], *, enqueue_children: bool) -> None:
        self.documents = documents
        self.enqueue_children = enqueue_children
        self.ids = [d.pk for d in documents]
        self.settled: set[int] = set()  # failed (or gone) documents: no longer this batch's to release
        self.current: int | None = None  # the document being parsed, to blame for a time limit

    def run(self) -> None:
        try:
            with _heartbeat(self.ids):
                prepared = self._prepare_all()
                if prepared:
                    self._embed_and_store(prepared)
        except (db.OperationalError, db.InterfaceError):
            self._release_others(keep=self.ids[0])
            _release(self.ids[0])
            raise
        except Exception as exc:
            if _caused_by_time_limit(exc):
                limit = _duration(settings.INGEST_TIME_LIMIT_S)
                blamed = self.current if self.current is not None else self.ids[0]
                document_fail(document_id=blamed, reason=f"Processing took longer than the time limit of {limit}.")
                self.settled.add(blamed)
                self._release_others(keep=blamed)
                return
            logger.exception("Ingestion of documents %s failed", self.ids)
            for document_id in self.ids:
                if document_id not in self.settled:
                    document_fail(document_id=document_id, reason=f"Internal error while processing the file: {exc}")

    def _release_others(self, *, keep: int) -> None:
        """Give companions back to the queue, with a message of their own."""
        for document_id in self.ids:
            if document_id != keep and document_id not in self.settled:
                _release(document_id)
                _enqueue(document_id)

    def _prepare_all(self) -> list[_Prepared]:
        from ingest.chunking import chunk_elements, document_title
        from ingest.embedding import count_tokens
        from ingest.redaction import elements_redact

        prepared: list[_Prepared] = []
        offset = 0
        for document in self.documents:
            self.current = document.pk
            timings: dict[str, float] = {}
            clock = time.monotonic()
            try:
                file_type, parsed = parse_file(Path(document.file.path), name=document.name, depth=_depth(document))
            except ParseError as exc:
                document_fail(document_id=document.pk, reason=str(exc))
                self.settled.add(document.pk)
                continue
            except (db.OperationalError, db.InterfaceError):
                raise
            except Exception as exc:
                if _caused_by_time_limit(exc):
                    raise
                logger.exception("Parsing document %s failed", document.pk)
                document_fail(document_id=document.pk, reason=f"Internal error while processing the file: {exc}")
                self.settled.add(document.pk)
                continue
            timings["parse"] = time.monotonic() - clock
            clock = time.monotonic()
            elements = parsed.elements
            if settings.PII_REDACTION == "ingest":
                # Before chunking: a phone number must not be split between two chunks,
                # and the heading each chunk carries comes from this text too.
                elements = elements_redact(elements, ner=settings.PII_REDACTION_NER)
            title = document_title(elements, name=document.name)
            drafts = chunk_elements(
                elements, max_tokens=settings.CHUNK_MAX_TOKENS, count_tokens=count_tokens, title=title
            )
            timings["chunk"] = time.monotonic() - clock
            _set_status(
                document.pk,
                Status.EMBEDDING,
                file_type=file_type,
                title=title,
                pages=parsed.pages,
                progress_total=len(drafts),
                progress_done=0,
            )
            prepared.append(_Prepared(document, drafts, parsed.attachments, timings, offset))
            offset += len(drafts)
        self.current = None
        return prepared

    def _embed_and_store(self, prepared: list[_Prepared]) -> None:
        from ingest.embedding import dimensions, embed_texts

        texts = [d.embedding_text for p in prepared for d in p.drafts]
        hashes = [text_digest(t) for t in texts]
        clock = time.monotonic()
        # Never embed the same text twice: not within the batch, and not when the
        # collection already holds it (an unchanged passage of a new version).
        known = _known_vectors(self.documents[0].collection_id, set(hashes))
        todo: dict[str, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in known:
                todo.setdefault(digest, text)
        pending = list(todo.items())
        # Large enough for the model to batch well, small enough for progress to move.
        step = max(1, settings.EMBEDDING_BATCH_SIZE * 8)
        for start in range(0, len(pending), step) if pending else [0]:
            part = pending[start : start + step]
            if part:
                known.update(zip([d for d, _ in part], embed_texts([t for _, t in part]), strict=True))
            for p in prepared:
                mine = hashes[p.offset : p.offset + len(p.drafts)]
                Document.objects.filter(pk=p.document.pk).update(
                    progress_done=sum(1 for d in mine if d in known), heartbeat_at=timezone.now()
                )
        vectors = (
            np.vstack([known[d] for d in hashes]).astype(np.float32, copy=False)
            if hashes
            else np.zeros((0, dimensions()), np.float32)
        )
        # Each document is charged its share of the batch's embedding time.
        elapsed = time.monotonic() - clock
        for p in prepared:
            p.timings["embed"] = elapsed * len(p.drafts) / max(1, len(texts))
        if len(pending) < len(texts):
            reused = len(texts) - len(pending)
            logger.info("Embedded %d texts, reused %d already in the collection", len(pending), reused)
        self._store(prepared, vectors, hashes)

    def _store(self, prepared: list[_Prepared], vectors: np.ndarray, hashes: list[str]) -> None:
        from ingest.embedding import to_bytes

        clock = time.monotonic()
        replaced_files: list[tuple[Any, str]] = []
        ready: list[tuple[_Prepared, list[Chunk]]] = []
        new_ids: list[int] = []
        new_texts: list[str] = []
        new_vectors: list[np.ndarray] = []
        old_ids: list[int] = []
        with transaction.atomic():
            for p in prepared:
                document_id = p.document.pk
                locked = Document.objects.select_for_update().filter(pk=document_id).first()
                if locked is None:  # deleted while we worked
                    self.settled.add(document_id)
                    continue
                mine = vectors[p.offset : p.offset + len(p.drafts)]
                old_ids += list(Chunk.objects.filter(document_id=document_id).values_list("id", flat=True))
                Chunk.objects.filter(document_id=document_id).delete()
                created = Chunk.objects.bulk_create(
                    Chunk(
                        document_id=document_id,
                        collection_id=locked.collection_id,
                        ordinal=i,
                        heading=d.heading,
                        text=d.text,
                        page_start=d.page_start,
                        page_end=d.page_end,
                        embedding=to_bytes(v),
                        text_hash=h,
                    )
                    for i, (d, v, h) in enumerate(
                        zip(p.drafts, mine, hashes[p.offset : p.offset + len(p.drafts)], strict=True)
                    )
                )
                new_ids += [c.pk for c in created]
                new_texts += [d.embedding_text for d in p.drafts[: len(created)]]
                if len(created):
                    new_vectors.append(mine)
                # A new version replaces the old one in this same transaction: readers
                # see either the old chunks or the new ones, never neither.
                if locked.supersedes_id:
                    old_version = Document.objects.filter(pk=locked.supersedes_id).first()
                    if old_version is not None:
                        old_ids += list(old_version.chunks.values_list("id", flat=True))
                        if old_version.file.name:
                            replaced_files.append((old_version.file.storage, old_version.file.name))
                        for removed in _with_descendants(old_version):
                            _remember_removed(removed, replaced_by_id=document_id if removed is old_version else None)
                        old_version.delete()
                p.document = locked
                ready.append((p, created))
            # The index is written before the statuses commit: a reader filters every hit
            # through the database, so ids of a transaction that rolls back are never served.
            index.index_upsert(
                collection_id=self.documents[0].collection_id,
                ids=new_ids,
                vectors=np.vstack(new_vectors) if new_vectors else None,
                remove=old_ids,
            )
            lexical.lexical_upsert(
                collection_id=self.documents[0].collection_id, ids=new_ids, texts=new_texts, remove=old_ids
            )
            index_s = time.monotonic() - clock
            now = timezone.now()
            for p, created in ready:
                p.timings["index"] = index_s * len(created) / max(1, len(new_ids))
                _set_status(
                    p.document.pk,
                    Status.READY,
                    chunk_count=len(created),
                    progress_done=len(created),
                    finished_at=now,
                    heartbeat_at=None,
                    timings={k: round(v, 3) for k, v in p.timings.items()},
                )
                for attachment in p.attachments:
                    with attachment.open() as stream:  # an archive member is streamed, never held whole
                        document_upload(
                            collection=p.document.collection,
                            name=attachment.name,
                            fileobj=stream,
                            user=p.document.uploaded_by,
                            parent=p.document,
                            enqueue=self.enqueue_children,
                        )
        self.settled.update(p.document.pk for p, _ in ready)
        for storage, name in replaced_files:
            storage.delete(name)
        logger.info("Documents ready: %d, %d chunks", len(ready), len(new_ids))


def documents_sweep() -> dict[str, int]:
    """Find documents nobody is working on any more and put them back on track.

    * processing with a stopped heartbeat (the worker was killed): queue again, or
      fail once ``INGEST_MAX_ATTEMPTS`` is reached;
    * queued while no worker has been busy for ``INGEST_RESEND_QUEUED_AFTER_S``:
      their messages were lost, send them again. While any document is being
      processed the queue is just long, and nothing is re-sent.

    Re-sending is safe because processing is idempotent and claimed under a lock.
    """
    now = timezone.now()
    stalled_before = now - timedelta(seconds=settings.INGEST_STALL_AFTER_S)
    stalled = list(
        Document.objects.filter(status__in=IN_PROGRESS)
        .filter(db.models.Q(heartbeat_at__lt=stalled_before) | db.models.Q(heartbeat_at=None))
        .values_list("pk", "attempts")
    )
    requeued = failed = resent = 0
    for document_id, attempts in stalled:
        if attempts >= settings.INGEST_MAX_ATTEMPTS:
            _claim(document_id)  # fails it with the reason, under the lock
            failed += 1
            continue
        if (
            Document.objects.filter(pk=document_id, status__in=IN_PROGRESS)
            .filter(db.models.Q(heartbeat_at__lt=stalled_before) | db.models.Q(heartbeat_at=None))
            .update(status=Status.QUEUED, heartbeat_at=None, updated_at=now)
        ):
            _enqueue(document_id)
            requeued += 1
    busy = Document.objects.filter(status__in=IN_PROGRESS, heartbeat_at__gte=stalled_before).exists()
    if not busy:
        quiet_since = now - timedelta(seconds=settings.INGEST_RESEND_QUEUED_AFTER_S)
        for document_id in Document.objects.filter(status=Status.QUEUED, updated_at__lt=quiet_since).values_list(
            "pk", flat=True
        ):
            Document.objects.filter(pk=document_id, status=Status.QUEUED).update(updated_at=now)
            _enqueue(document_id)
            resent += 1
    if requeued or failed or resent:
        logger.warning("Sweep: %d stalled re-queued, %d failed, %d lost messages re-sent", requeued, failed, resent)
    return {"requeued": requeued, "failed": failed, "resent": resent}


def document_delete(*, document: Document, user: Any = None) -> None:
    """Delete a document: its chunks stop being retrievable at once, then file and vectors go.

    ``user`` is who deleted it, for the audit log.
    """
    collection_id = document.collection_id
    chunk_ids = list(document.chunks.values_list("id", flat=True))
    file_name = document.file.name
    storage = document.file.storage
    with transaction.atomic():
        audit_record(
            action=AuditEvent.Action.DOCUMENT_DELETED, actor=user, collection=document.collection, target=document,
            details={"name": document.name, "sha256": document.content_hash, "chunks": len(chunk_ids)},
        )  # fmt: skip
        for removed in _with_descendants(document):
            _remember_removed(removed)
        document.delete()
    if file_name:
        storage.delete(file_name)
    index.index_remove(collection_id=collection_id, ids=chunk_ids)
    lexical.lexical_remove(collection_id=collection_id, ids=chunk_ids)


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


def _indexed_rows(collection_id: int, *, exclude: Sequence[int] = ()) -> list[tuple[int, str, bytes | memoryview]]:
    """(chunk id, indexed text, embedding) of a collection's ready chunks, in id order."""
    from ingest.chunking import indexed_text

    rows = (
        Chunk.objects.filter(collection_id=collection_id, document__status=Status.READY)
        .exclude(id__in=list(exclude))
        .order_by("id")
        .values_list("id", "document__title", "heading", "text", "embedding")
    )
    return [
        (chunk_id, indexed_text(title=title, heading=heading, text=text), embedding)
        for chunk_id, title, heading, text, embedding in rows
    ]


def lexical_rebuild(*, collection_id: int) -> int:
    """Rebuild one collection's lexical index from the database alone. Returns its size."""
    rows = _indexed_rows(collection_id)
    lexical.lexical_replace(collection_id=collection_id, ids=[r[0] for r in rows], texts=[r[1] for r in rows])
    return len(rows)


def index_rebuild(*, collection_id: int) -> int:
    """Rebuild one collection's indexes (FAISS and lexical) from the database alone. Returns its size."""
    from ingest.embedding import from_bytes

    rows = _indexed_rows(collection_id)
    ids = [r[0] for r in rows]
    vectors = np.vstack([from_bytes(r[2]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
    index.index_replace(collection_id=collection_id, ids=ids, vectors=vectors)
    lexical.lexical_replace(collection_id=collection_id, ids=ids, texts=[r[1] for r in rows])
    return len(ids)


def collection_reindex(*, collection_id: int) -> int:
    """Re-embed every chunk of a collection with the configured model, then swap indexes.

    For a changed embedding model (or a changed way of composing what is embedded):
    the old index keeps answering while the new vectors are computed, and the new
    index replaces it in one rename. Chunks that became ready meanwhile are added
    after the swap. Returns the number of vectors.
    """
    from ingest.embedding import embed_texts, from_bytes, to_bytes

    rows = _indexed_rows(collection_id)
    texts = [r[1] for r in rows]
    vectors = embed_texts(texts) if texts else np.zeros((0, 0), np.float32)
    ids = [row[0] for row in rows]
    with transaction.atomic():
        Chunk.objects.bulk_update(
            [
                Chunk(id=chunk_id, embedding=to_bytes(v), text_hash=text_digest(t))
                for chunk_id, v, t in zip(ids, vectors, texts, strict=True)
            ],
            ["embedding", "text_hash"],
            batch_size=500,
        )
        index.index_replace(collection_id=collection_id, ids=ids, vectors=vectors)
        lexical.lexical_replace(collection_id=collection_id, ids=ids, texts=texts)
    late = _indexed_rows(collection_id, exclude=ids)
    if late:
        index.index_upsert(
            collection_id=collection_id,
            ids=[r[0] for r in late],
            vectors=np.vstack([from_bytes(r[2]) for r in late]),
        )
        lexical.lexical_upsert(collection_id=collection_id, ids=[r[0] for r in late], texts=[r[1] for r in late])
    return len(ids) + len(late)


def collection_update(*, collection: Collection, name: str | None = None, description: str | None = None) -> Collection:
    """Rename a collection or change its description."""
    if name is not None:
        name = name.strip()
        if not name:
            raise ValueError("A collection needs a name.")
        collection.name = name
    if description is not None:
        collection.description = description
    try:
        with transaction.atomic():
            collection.save()
    except IntegrityError as exc:
        raise CollectionNameTaken(f"A collection named '{name}' already exists.") from exc
    return collection


def document_reprocess(*, document: Document) -> Document:
    """Parse, chunk and embed a document again from its stored original.

    The document is queued again: until the worker has replaced its chunks (in one
    transaction, see ``_Batch._store``) it is not ready and is not searched. A
    document being processed right now is left to that run.
    """
    with transaction.atomic():
        updated = (
            Document.objects.filter(pk=document.pk)
            .exclude(status__in=IN_PROGRESS)
            .update(status=Status.QUEUED, attempts=0, error="", heartbeat_at=None, updated_at=timezone.now())
        )
        if updated:
            transaction.on_commit(lambda: _enqueue(document.pk))
    document.refresh_from_db()
    return document
