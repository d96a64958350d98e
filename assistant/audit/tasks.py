"""Celery tasks of the audit log: thin, idempotent, the work lives in ``services``."""

from __future__ import annotations

from celery import shared_task

from assistant.audit import services


@shared_task(ignore_result=True)
def purge_audit_events() -> int:
    """Apply the retention period (``AUDIT_RETENTION_DAYS``); run daily by the worker's beat."""
    return services.audit_purge()
