"""Celery tasks: thin, idempotent, taking ids. The work lives in ``pipeline`` (and the sweep in ``claims``).

Delivery guarantees come from the settings (late acks, re-queue when a worker is
lost) and from the sweep below; processing itself is claimed under a row lock, so
a message delivered twice does the work once.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from ingest import claims, pipeline
from ingest.vector_store import vector_store

_PROCESSING: dict[str, Any] = {
    "acks_late": True,
    "ignore_result": True,
    "soft_time_limit": settings.INGEST_TIME_LIMIT_S,
    # The hard limit kills the child if the soft one could not interrupt it (stuck
    # in native code); the message is then re-delivered and counted as an attempt.
    "time_limit": settings.INGEST_TIME_LIMIT_S + 120,
    # The database or broker being briefly away is transient: retry with backoff.
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


@shared_task(**_PROCESSING)
def process_document(document_id: int) -> None:
    pipeline.document_process(document_id=document_id)


@shared_task(**_PROCESSING)
def process_documents(document_ids: list[int]) -> None:
    """A group of small uploads (``queue.documents_enqueue``), processed as one batch."""
    pipeline.documents_process(document_ids=document_ids)


@shared_task(ignore_result=True)
def sweep_documents() -> dict[str, int]:
    return claims.documents_sweep()


@shared_task(ignore_result=True, acks_late=True)
def rebuild_indexes(collection_id: int) -> int:
    """Rebuild a collection's indexes from the database (on the index queue, beside uploads)."""
    return vector_store().rebuild(collection_id=collection_id)
