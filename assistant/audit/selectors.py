"""Reading the audit log: the one filter the portal page, its export and the command share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from assistant.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditFilter:
    actions: tuple[str, ...] = ()
    username: str = ""
    # A collection id, or a collection's name as it was when the event happened.
    collection: str = ""
    since: date | datetime | None = None  # inclusive
    until: date | datetime | None = None  # a date includes that whole day

    def as_dict(self) -> dict[str, object]:
        """What the filter was, for the record of an export."""
        return {
            "actions": list(self.actions),
            "username": self.username,
            "collection": self.collection,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _aware(value: date | datetime, *, end_of_day: bool = False) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1) if end_of_day else value, time.min)
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def audit_events(*, filters: AuditFilter | None = None) -> QuerySet[AuditEvent]:
    """Events matching ``filters``, newest first."""
    events = AuditEvent.objects.all()
    if filters is None:
        return events
    if filters.actions:
        events = events.filter(action__in=filters.actions)
    if filters.username:
        events = events.filter(actor_username=filters.username.strip())
    if filters.collection:
        key = filters.collection.strip()
        events = events.filter(Q(collection_id=int(key)) if key.isdigit() else Q(collection_name=key))
    if filters.since:
        events = events.filter(created_at__gte=_aware(filters.since))
    if filters.until:
        if isinstance(filters.until, datetime):
            events = events.filter(created_at__lte=_aware(filters.until))
        else:
            events = events.filter(created_at__lt=_aware(filters.until, end_of_day=True))
    return events
