"""Celery tasks of the connectors: thin, idempotent, taking ids. The work is in ``sync``.

Their names contain ``connectors`` (``assistant.connectors.tasks.*``), so a deployment
can route them to a queue of their own and a long sync never delays uploads.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from assistant.connectors import liveness, sync
from assistant.connectors.models import Connector


@shared_task(
    acks_late=True,
    ignore_result=True,
    soft_time_limit=settings.CONNECTOR_SYNC_TIME_LIMIT_S,
    time_limit=settings.CONNECTOR_SYNC_TIME_LIMIT_S + 120,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)
def sync_connector(connector_id: int) -> None:
    """One run of a connector; a message for a connector that is gone, paused or busy does nothing."""
    connector = Connector.objects.filter(pk=connector_id).first()
    if connector is None:
        return
    try:
        sync.connector_sync(connector=connector)
    except (sync.SyncBusy, sync.SyncRefused, Connector.DoesNotExist):
        return


@shared_task(ignore_result=True)
def connectors_tick() -> dict[str, Any]:
    """From the beat: resume stalled runs, start due ones."""
    return liveness.connectors_sweep()
