"""Sending documents to the workers: which message carries which documents.

The one place that imports the Celery tasks, late: ``tasks`` imports the pipeline,
so a module-level import here would close a circle.

A broker that cannot be reached (Redis restarting) does not fail the upload that
sends: the documents are committed as queued, the error is logged, and the sweep
(``claims.documents_sweep``) sends them again once the broker is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from django.conf import settings

from ingest.models import Document

logger = logging.getLogger(__name__)


def _tasks() -> ModuleType:
    from ingest import tasks

    return tasks


def _send(task: Any, argument: int | list[int]) -> None:
    from kombu.exceptions import OperationalError

    try:
        task.delay(argument)
    except OperationalError as exc:
        logger.error(
            "The broker could not be reached (%s): documents %s stay queued; the sweep sends them again", exc, argument
        )


def document_enqueue(document_id: int) -> None:
    """Send one document to the workers in a message of its own."""
    _send(_tasks().process_document, document_id)


def documents_enqueue(document_ids: Sequence[int]) -> None:
    """Send many uploaded documents to the workers with few messages.

    Small files of one collection travel in groups (one message per batch the
    worker would form anyway); a large file gets a message of its own, so that a
    worker is free to take it while another works through the small ones. Call it
    once the uploads are committed: a worker must find the rows it is sent.
    """
    process_documents = _tasks().process_documents
    rows = Document.objects.filter(pk__in=document_ids, status=Document.Status.QUEUED).values_list(
        "pk", "collection_id", "size"
    )
    groups: dict[int, list[int]] = {}
    sizes: dict[int, int] = {}
    per_batch, max_bytes = settings.INGEST_BATCH_DOCUMENTS, settings.INGEST_BATCH_MAX_BYTES
    for pk, collection_id, size in sorted(rows):
        if size > max_bytes or per_batch <= 1:
            document_enqueue(pk)
            continue
        group = groups.setdefault(collection_id, [])
        if len(group) >= per_batch or sizes.get(collection_id, 0) + size > max_bytes:
            _send(process_documents, group)
            group = groups[collection_id] = []
            sizes[collection_id] = 0
        group.append(pk)
        sizes[collection_id] = sizes.get(collection_id, 0) + size
    for group in groups.values():
        if group:
            _send(process_documents, group)
