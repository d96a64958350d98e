"""Who works on which document: claiming under a row lock, heartbeats, giving back, the sweep.

Every worker claims the documents it processes here, so a message delivered twice
(or a document re-sent by the sweep) is worked on once. The work itself is in
``pipeline.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django import db
from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from ingest import queue
from ingest.models import FINISHED, IN_PROGRESS, Document, DocumentEvent

logger = logging.getLogger(__name__)

Status = Document.Status


def documents_status_set(documents: QuerySet[Document], status: str, *, message: str = "", **fields: Any) -> list[int]:
    """Move the documents ``documents`` selects to ``status``; the one place a status changes.

    Each change is written to the documents' history (``DocumentEvent``) in the same
    transaction. The rows are locked while they are read and updated, so the
    conditions in ``documents`` still hold for the rows updated. Returns their ids.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(documents.select_for_update().order_by("pk").values_list("pk", flat=True))
        if not ids:
            return []
        Document.objects.filter(pk__in=ids).update(status=status, updated_at=now, **fields)
        document_events_record(document_ids=ids, status=status, message=message, at=now)
    return ids


def document_events_record(*, document_ids: Sequence[int], status: str, message: str = "", at: Any = None) -> None:
    """Add a line to the documents' history (a new upload's first line; a status change)."""
    at = at or timezone.now()
    DocumentEvent.objects.bulk_create(
        DocumentEvent(document_id=pk, status=status, message=message[:2000], at=at) for pk in document_ids
    )


def document_status_set(document_id: int, status: str, *, message: str = "", **fields: Any) -> None:
    documents_status_set(Document.objects.filter(pk=document_id), status, message=message, **fields)


def document_fail(*, document_id: int, reason: str) -> None:
    document_status_set(
        document_id, Status.FAILED, message=reason, error=reason[:2000], finished_at=timezone.now(), heartbeat_at=None
    )


def document_claim(document_id: int) -> Document | None:
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
        documents_status_set(
            Document.objects.filter(pk=document_id), Status.PARSING, message=f"attempt {document.attempts}",
            attempts=document.attempts, heartbeat_at=now, started_at=now, finished_at=None, error="",
            progress_done=0, progress_total=0,
        )  # fmt: skip
        return document


def document_release(document_id: int) -> None:
    """Hand a claimed document back to the queue (a transient error will retry it).

    The attempt is given back too: an outage of the database is not the file's fault
    and must not use up the attempts that protect against files that kill workers.
    """
    documents_status_set(
        Document.objects.filter(pk=document_id, status__in=IN_PROGRESS, attempts__gt=0),
        Status.QUEUED,
        message="Handed back to the queue after a temporary error.",
        heartbeat_at=None,
        attempts=F("attempts") - 1,
    )


@contextmanager
def documents_heartbeat(document_ids: list[int]) -> Iterator[None]:
    """Touch the documents' heartbeat from a side thread while the work runs."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.INGEST_HEARTBEAT_S):
                try:
                    Document.objects.filter(pk__in=document_ids, status__in=IN_PROGRESS).update(
                        heartbeat_at=timezone.now()
                    )
                except Exception:  # a missed beat is not worth failing the documents for
                    logger.warning("Heartbeat for documents %s missed", document_ids[:10], exc_info=True)
                    # A database that restarted cut this connection: the next beat opens a new
                    # one, so the sweep does not take the documents from a worker still on them.
                    db.connection.close()
        finally:
            db.connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{document_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def documents_claim_companions(document: Document, preferred: Sequence[int] = ()) -> list[Document]:
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
        documents_status_set(
            Document.objects.filter(pk__in=ids, status=Status.QUEUED),
            Status.PARSING,
            message=f"in a batch with document {document.pk}",
            attempts=F("attempts") + 1,
            heartbeat_at=now,
            started_at=now,
            finished_at=None,
            error="",
            progress_done=0,
            progress_total=0,
        )
    return list(Document.objects.filter(pk__in=ids, status=Status.PARSING).order_by("pk"))


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
            document_claim(document_id)  # fails it with the reason, under the lock
            failed += 1
            continue
        if documents_status_set(
            Document.objects.filter(pk=document_id, status__in=IN_PROGRESS).filter(
                db.models.Q(heartbeat_at__lt=stalled_before) | db.models.Q(heartbeat_at=None)
            ),
            Status.QUEUED,
            message="The worker stopped answering; queued again.",
            heartbeat_at=None,
        ):
            queue.document_enqueue(document_id)
            requeued += 1
    busy = Document.objects.filter(status__in=IN_PROGRESS, heartbeat_at__gte=stalled_before).exists()
    if not busy:
        quiet_since = now - timedelta(seconds=settings.INGEST_RESEND_QUEUED_AFTER_S)
        for document_id in Document.objects.filter(status=Status.QUEUED, updated_at__lt=quiet_since).values_list(
            "pk", flat=True
        ):
            Document.objects.filter(pk=document_id, status=Status.QUEUED).update(updated_at=now)
            queue.document_enqueue(document_id)
            resent += 1
    if requeued or failed or resent:
        logger.warning("Sweep: %d stalled re-queued, %d failed, %d lost messages re-sent", requeued, failed, resent)
    return {"requeued": requeued, "failed": failed, "resent": resent}
