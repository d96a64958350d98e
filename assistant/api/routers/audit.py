"""The caller's own audit trail: what they asked, uploaded, deleted and granted."""

from datetime import date
from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from assistant.api.auth import caller
from assistant.api.lookups import paginate
from assistant.api.schemas import AuditEventPage, ErrorOut
from assistant.audit.models import AuditEvent
from assistant.audit.selectors import AuditFilter, audit_events

router = Router(tags=["audit"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}


def _event_out(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.pk,
        "created_at": e.created_at,
        "action": e.action,
        "collection_id": e.collection_id,
        "collection_name": e.collection_name,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "details": e.details,
    }


@router.get("/audit/events", response={200: AuditEventPage, **ERRORS}, summary="My audit events")
def my_events(
    request: HttpRequest,
    action: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> Any:
    """Events the caller caused, newest first. Other people's events are never listed,
    whatever the caller's role: the full log is for administrators in the portal."""
    filters = AuditFilter(actions=(action,) if action else (), since=since, until=until)
    rows = audit_events(filters=filters).filter(actor=caller(request)).order_by("-created_at", "-id")
    return paginate(rows, limit=limit, offset=offset, convert=lambda page: [_event_out(e) for e in page])
