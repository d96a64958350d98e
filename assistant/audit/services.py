"""Writing to the audit log, and the only two ways rows ever leave it.

``audit_record`` is the single call every audited action makes (see the README's
"Audit" section for where it is called from). ``audit_purge`` applies the retention
period; ``user_data_delete`` deletes a user under ``USER_DELETION_POLICY``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from assistant.audit.gate import audit_gate
from assistant.audit.models import AuditEvent
from assistant.ops.context import current_request_id

if TYPE_CHECKING:
    from assistant.accounts.models import CollectionGrant

Action = AuditEvent.Action

POLICY_ANONYMIZE = "anonymize"
POLICY_KEEP = "keep"
DELETION_POLICIES = (POLICY_ANONYMIZE, POLICY_KEEP)

Target = models.Model | tuple[str, Any] | None


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as this instance can know it.

    Behind ``DJANGO_PROXY_COUNT`` reverse proxies the socket peer is the nearest
    proxy; each proxy appends the address it was reached from to
    X-Forwarded-For, so the client is the entry that many places from the end.
    Entries further left were written by the client and are not trusted.
    """
    count = settings.PROXY_COUNT
    candidate = request.META.get("REMOTE_ADDR", "")
    if count > 0:
        hops = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(hops) >= count:
            candidate = hops[-count]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _target(target: Target) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, models.Model):
        return target._meta.label_lower, str(target.pk)
    kind, key = target
    return str(kind), str(key)


def audit_record(
    *,
    action: str,
    actor: Any = None,
    collection: Any = None,
    target: Target = None,
    details: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditEvent:
    """Append one event to the audit log and return it.

    ``actor`` is the user who acted (``None``: an operator at the shell or the
    system; taken from ``request.user`` when a request is given). ``collection`` is
    the collection concerned, ``target`` the object acted on (a model instance or a
    ``(type, id)`` pair), ``details`` anything JSON can hold. The event joins the
    caller's transaction: if the action rolls back, so does its record.
    """
    if action not in AuditEvent.Action.values:
        raise ValueError(f"Unknown audit action {action!r}; add it to AuditEvent.Action.")
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    target_type, target_id = _target(target)
    # The id of the request (or task) that acted: the same in the logs and the LLM server's.
    if (request_id := current_request_id()) is not None and not (details and "request_id" in details):
        details = {**(details or {}), "request_id": request_id}
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        collection_id=collection.pk if collection is not None else None,
        collection_name=str(getattr(collection, "name", ""))[:200] if collection is not None else "",
        target_type=target_type,
        target_id=target_id[:64],
        # Round-trip through Django's encoder: dates, decimals and UUIDs become
        # strings now rather than failing at save time.
        details=json.loads(json.dumps(details or {}, cls=DjangoJSONEncoder)),
        ip=client_ip(request) if request is not None else None,
    )


def permission_change_record(
    *, grant: CollectionGrant, granted: bool, actor: Any = None, request: HttpRequest | None = None
) -> AuditEvent:
    """Record a collection grant given (``granted=True``) or taken away. Call it where grants change."""
    return audit_record(
        action=Action.PERMISSION_GRANTED if granted else Action.PERMISSION_REVOKED,
        actor=actor,
        collection=grant.collection,
        target=grant,
        details={
            "role": grant.role,
            "group": grant.group.name if grant.group_id and grant.group else None,
            "user": grant.user.get_username() if grant.user_id and grant.user else None,
        },
        request=request,
    )


# --- Retention ---------------------------------------------------------------------

PURGE_BATCH = 5000


def audit_purge(*, older_than_days: int | None = None, now: datetime | None = None) -> int:
    """Delete events older than the retention period (``AUDIT_RETENTION_DAYS``; 0 keeps all).

    Returns how many were deleted, and records the purge itself when it deleted
    anything. Works in batches, each its own short transaction, so a first purge
    of a large log does not hold the database's write lock for long.
    """
    days = settings.AUDIT_RETENTION_DAYS if older_than_days is None else older_than_days
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    while True:
        with audit_gate():
            ids = list(AuditEvent.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:PURGE_BATCH])
            if not ids:
                break
            deleted += AuditEvent.objects.filter(id__in=ids).delete()[0]
    if deleted:
        audit_record(
            action=Action.AUDIT_PURGED,
            details={"deleted": deleted, "before": cutoff.isoformat(), "retention_days": days},
        )
    return deleted


# --- Deleting a user -----------------------------------------------------------------


def audit_pseudonym(*, user_id: int) -> str:
    """A stable stand-in for a deleted user's name.

    The same user always gets the same pseudonym, so their events still read as one
    person's; without the instance's secret key it cannot be traced back.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), f"audit-pseudonym:{user_id}".encode(), hashlib.sha256)
    return f"deleted-{digest.hexdigest()[:12]}"


def audit_actor_forget(*, user: Any) -> int:
    """Apply ``USER_DELETION_POLICY`` to the audit rows about ``user``; returns rows changed.

    ``keep``: nothing here (the rows keep the name; deleting the user clears the
    link). ``anonymize``: every row the user acted in, and every row naming them
    (failed sign-ins with their name, grants to them), gets the pseudonym instead
    of the name, and loses the client address and the text of their questions:
    the event stays (what, when, which collection, which passages), the person
    and their words go.
    """
    if settings.USER_DELETION_POLICY != POLICY_ANONYMIZE:
        return 0
    username = user.get_username()
    pseudonym = audit_pseudonym(user_id=user.pk)
    changed = 0
    with audit_gate():
        changed += AuditEvent.objects.filter(actor_id=user.pk).update(actor=None, actor_username=pseudonym, ip=None)
        naming = AuditEvent.objects.filter(
            Q(details__username=username) | Q(details__user=username)
        ) | AuditEvent.objects.filter(actor_username=pseudonym, details__has_key="question")
        for event in naming.distinct().only("id", "details", "actor_username").iterator(chunk_size=500):
            details = dict(event.details)
            for key in ("username", "user"):
                if details.get(key) == username:
                    details[key] = pseudonym
            if "question" in details and event.actor_username == pseudonym:
                details["question"] = None
            changed += AuditEvent.objects.filter(pk=event.pk).update(details=details)
    return changed


class UserDeletionRefused(ValueError):
    """A user that must not be deleted (the last active superuser)."""


def user_data_delete(*, user: Any, actor: Any = None, request: HttpRequest | None = None) -> dict[str, Any]:
    """Delete a user, their conversations and messages, following ``USER_DELETION_POLICY``.

    Documents and collections they created stay (they belong to the organisation;
    their ``uploaded_by``/``created_by`` becomes empty). Their audit rows follow
    the policy (``audit_actor_forget``). The deletion itself is recorded, naming
    the user by pseudonym under ``anonymize``. Returns what was deleted.
    """
    from django.contrib.auth import get_user_model

    from assistant.chat.models import Conversation, Message

    if (
        user.is_superuser
        and not get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(pk=user.pk).exists()
    ):
        raise UserDeletionRefused("This is the last active superuser; make another one first.")
    policy = settings.USER_DELETION_POLICY
    user_id = user.pk
    shown = audit_pseudonym(user_id=user_id) if policy == POLICY_ANONYMIZE else user.get_username()
    with transaction.atomic():
        conversations = Conversation.objects.filter(user_id=user_id)
        summary = {
            "username": shown,
            "policy": policy,
            "conversations": conversations.count(),
            "messages": Message.objects.filter(conversation__user_id=user_id).count(),
        }
        conversations.delete()
        # The user's own audit rows are rewritten by the pre_delete receiver
        # (receivers.py), which every way of deleting a user goes through.
        user.delete()
        audit_record(
            action=Action.USER_DATA_DELETED, actor=actor, target=("auth.user", user_id), details=summary,
            request=request,
        )  # fmt: skip
    return summary


# --- Export -----------------------------------------------------------------------

EXPORT_FIELDS = [
    "id", "created_at", "action", "actor_id", "actor_username", "collection_id", "collection_name",
    "target_type", "target_id", "ip", "details",
]  # fmt: skip
EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_BATCH = 1000


def audit_as_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "action": event.action,
        "actor_id": event.actor_id,
        "actor_username": event.actor_username,
        "collection_id": event.collection_id,
        "collection_name": event.collection_name,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "details": event.details,
    }


def _batch(queryset: QuerySet[AuditEvent], after_id: int) -> list[AuditEvent]:
    return list(queryset.filter(id__gt=after_id).order_by("id")[:EXPORT_BATCH])


def _spreadsheet_safe(value: Any) -> Any:
    # A cell starting with = + - @ is run as a formula by spreadsheet programs; names
    # typed by users (collections, failed sign-ins) must not become one.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _encode(events: list[AuditEvent], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(audit_as_dict(e), ensure_ascii=False, cls=DjangoJSONEncoder) + "\n" for e in events)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for event in events:
        row = audit_as_dict(event)
        row["details"] = json.dumps(row["details"], ensure_ascii=False, cls=DjangoJSONEncoder)
        writer.writerow([_spreadsheet_safe(row[name]) for name in EXPORT_FIELDS])
    return buffer.getvalue()


def _header(fmt: str) -> str:
    if fmt != "csv":
        return ""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(EXPORT_FIELDS)
    return buffer.getvalue()


def _check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}.")


def audit_export_lines(*, queryset: QuerySet[AuditEvent], fmt: str) -> Iterator[str]:
    """The events of ``queryset`` as CSV or JSON Lines, oldest first, a batch at a time.

    Batches are read by primary key (keyset), so memory stays flat however long the
    log is and no cursor stays open between batches.
    """
    _check_format(fmt)
    yield _header(fmt)
    after = 0
    while events := _batch(queryset, after):
        yield _encode(events, fmt)
        after = events[-1].pk


async def audit_export_lines_async(*, queryset: QuerySet[AuditEvent], fmt: str) -> AsyncIterator[str]:
    """``audit_export_lines`` for the ASGI server, which would otherwise read a sync
    iterator whole into memory before sending the first byte."""
    _check_format(fmt)
    yield _header(fmt)
    after = 0
    while events := await sync_to_async(_batch)(queryset, after):
        yield _encode(events, fmt)
        after = events[-1].pk
