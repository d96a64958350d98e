"""The periodic directory sync (scheduled by the beat when LDAP_SERVER_URI is set)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="assistant.directory.tasks.directory_sync")
def directory_sync() -> dict[str, int]:
    from assistant.directory.services import directory_sync as sync

    report = sync()
    return {"checked": report.checked, "deprovisioned": len(report.deprovisioned), "updated": len(report.updated)}
