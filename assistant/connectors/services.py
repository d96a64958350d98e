"""Write-side operations on connectors: add, change, pause, resume, remove, sync now.

The one path of every surface (``manage.py connector``, the portal). A person acting
(``actor``) must manage the collection; ``actor=None`` is an operator at the shell.
Credentials are sealed here (``secrets``) and appear nowhere else: not in the audit
details, not in what ``selectors.connector_described`` shows.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.selectors import user_can
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.connectors import liveness, sync
from assistant.connectors.models import Connector
from assistant.connectors.secrets import credentials_seal
from assistant.connectors.sources import source_type
from ingest import services as ingest_services
from ingest.models import Collection, Document

Action = AuditEvent.Action


class ConnectorInvalid(ValueError):
    """The connector cannot be stored as asked; the message names the problem."""


def _check_manager(actor: Any, collection: Collection) -> None:
    if actor is not None and not user_can(user=actor, collection=collection, role=Role.MANAGE):
        raise PermissionDenied("You do not manage this collection.")


def _clean(kind: str, settings: dict[str, Any]) -> dict[str, Any]:
    try:
        return source_type(kind).clean_settings(settings)
    except ValueError as exc:
        raise ConnectorInvalid(str(exc)) from None


def connector_add(
    *,
    collection: Collection,
    kind: str,
    name: str,
    settings: dict[str, Any],
    credentials: dict[str, str] | None = None,
    every_minutes: int = 0,
    actor: Any = None,
) -> Connector:
    """Add a connector to ``collection``; it first runs when asked, or at its schedule."""
    _check_manager(actor, collection)
    name = name.strip()
    if not name:
        raise ConnectorInvalid("A connector needs a name.")
    if every_minutes < 0:
        raise ConnectorInvalid("--every must be a number of minutes (0: only when asked).")
    cleaned = _clean(kind, settings)
    sealed = credentials_seal(credentials or {})
    try:
        with transaction.atomic():
            connector = Connector.objects.create(
                collection=collection, name=name, kind=kind, settings=cleaned, credentials=sealed,
                every_minutes=every_minutes, created_by=actor if getattr(actor, "pk", None) else None,
            )  # fmt: skip
            audit_record(
                action=Action.CONNECTOR_ADDED, actor=actor, collection=collection, target=connector,
                details={"name": name, "type": kind, "settings": cleaned, "every_minutes": every_minutes},
            )  # fmt: skip
    except IntegrityError:
        raise ConnectorInvalid(f"A connector named '{name}' already exists.") from None
    return connector


def connector_change(
    *,
    connector: Connector,
    settings: dict[str, Any] | None = None,
    credentials: dict[str, str] | None = None,
    every_minutes: int | None = None,
    paused: bool | None = None,
    actor: Any = None,
) -> Connector:
    """Change a connector's settings (a new group mapping applies at its next run), schedule or pause."""
    _check_manager(actor, connector.collection)
    changed: dict[str, Any] = {}
    if settings is not None:
        connector.settings = _clean(connector.kind, {**connector.settings, **settings})
        changed["settings"] = connector.settings
        # A new mapping (or site, or space) applies to every item: the next run lists them all.
        connector.changes_cursor = ""
    if credentials is not None:
        connector.credentials = credentials_seal(credentials)
        changed["credentials"] = "replaced"
    if every_minutes is not None:
        if every_minutes < 0:
            raise ConnectorInvalid("--every must be a number of minutes (0: only when asked).")
        connector.every_minutes = changed["every_minutes"] = every_minutes
    if paused is not None:
        connector.paused = changed["paused"] = paused
    if not changed:
        return connector
    # Only the fields changed here: a sync running meanwhile writes its state and counts
    # to the same row (``sync``), and a whole-row save of this copy would undo them.
    columns = {"settings": ["settings", "changes_cursor"]}
    with transaction.atomic():
        connector.save(update_fields=[column for key in changed for column in columns.get(key, [key])])
        audit_record(
            action=Action.CONNECTOR_CHANGED, actor=actor, collection=connector.collection, target=connector,
            details={"name": connector.name, **changed},
        )  # fmt: skip
    return connector


def connector_remove(*, connector: Connector, delete_documents: bool = False, actor: Any = None) -> int:
    """Remove a connector. Its documents stay (as if uploaded) unless ``delete_documents``; returns how many went."""
    _check_manager(actor, connector.collection)
    documents = list(
        Document.objects.filter(connector_items__connector=connector).distinct() if delete_documents else []
    )
    with transaction.atomic():
        audit_record(
            action=Action.CONNECTOR_REMOVED, actor=actor, collection=connector.collection, target=connector,
            details={"name": connector.name, "type": connector.kind, "documents_deleted": len(documents)},
        )  # fmt: skip
        connector.delete()
    for document in documents:
        ingest_services.document_delete(document=document, user=actor)
    return len(documents)


def connector_sync_request(*, connector: Connector, actor: Any = None) -> str | None:
    """Queue a run now ("sync now"): the id of its task, or None if one is already queued or running."""
    _check_manager(actor, connector.collection)
    if connector.paused:
        raise sync.SyncRefused(f"The connector '{connector.name}' is paused; resume it first.")
    task_id = str(uuid.uuid4())  # chosen here: the message is sent only once the row is committed
    with transaction.atomic():
        queued = Connector.objects.filter(pk=connector.pk, state=Connector.State.IDLE).update(
            state=Connector.State.QUEUED, heartbeat_at=timezone.now()
        )
        if queued:
            audit_record(
                action=Action.CONNECTOR_SYNC_REQUESTED, actor=actor, collection=connector.collection,
                target=connector, details={"name": connector.name, "task_id": task_id},
            )  # fmt: skip
            transaction.on_commit(partial(liveness.connector_enqueue, connector.pk, task_id=task_id))
    return task_id if queued else None
