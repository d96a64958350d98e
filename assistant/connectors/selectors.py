"""Reads about connectors: which a collection has, their state, and where a document came from."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from assistant.connectors.models import Connector, ConnectorItem
from ingest.models import Collection


def connectors_of(*, collection: Collection) -> QuerySet[Connector]:
    return Connector.objects.filter(collection=collection).order_by("name")


def connector_named(name: str) -> Connector | None:
    found: Connector | None = Connector.objects.filter(name=name.strip()).select_related("collection").first()
    return found


def connector_described(connector: Connector) -> dict[str, Any]:
    """What ``connector list`` and the portal show: settings and state, never the credentials."""
    return {
        "id": connector.pk,
        "name": connector.name,
        "collection": connector.collection.name,
        "type": connector.kind,
        "settings": connector.settings,
        "has_credentials": bool(bytes(connector.credentials or b"")),
        "every_minutes": connector.every_minutes,
        "paused": connector.paused,
        "state": connector.state,
        "started_at": connector.started_at.isoformat() if connector.started_at else None,
        "finished_at": connector.finished_at.isoformat() if connector.finished_at else None,
        "cursor": connector.cursor,
        "seen": connector.seen,
        "fetched": connector.fetched,
        "failed": connector.failed,
        "bytes_read": connector.bytes_read,
        "summary": connector.summary,
        "last_error": connector.last_error,
        "items": connector.items.exclude(document=None).count(),
    }


def connectors_progress(*, collection: Collection) -> list[dict[str, Any]]:
    """Each connector's state and counts, as a running sync updates them (the caller checked the manager)."""
    rows = []
    for connector in connectors_of(collection=collection):
        rows.append({
            "id": connector.pk, "name": connector.name, "state": connector.state,
            "state_display": str(connector.get_state_display()), "seen": connector.seen,
            "fetched": connector.fetched, "failed": connector.failed, "bytes_read": connector.bytes_read,
            "cursor": connector.cursor if connector.state == Connector.State.RUNNING else "",
            "last_error": connector.last_error,
        })  # fmt: skip
    return rows


def failed_items(*, connector: Connector, limit: int = 20) -> list[ConnectorItem]:
    return list(connector.items.exclude(error="").order_by("source_id")[:limit])


def source_link(*, document_id: int) -> str:
    """Where the document lives at its source (a path, a URL); empty for an upload.

    The caller has checked that the user may see the document.
    """
    link: str | None = (
        ConnectorItem.objects.filter(document_id=document_id).order_by("pk").values_list("link", flat=True).first()
    )
    return link or ""


def source_links(*, document_ids: set[int]) -> dict[int, str]:
    """``source_link`` for many documents at once (those without one are left out)."""
    found: dict[int, str] = {}
    rows = ConnectorItem.objects.filter(document_id__in=document_ids).exclude(link="").order_by("-pk")
    for document_id, link in rows.values_list("document_id", "link"):
        found[document_id] = link
    return found
