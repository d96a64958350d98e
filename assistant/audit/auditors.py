"""The auditor role: who may read and export the whole audit log.

The log holds every user's questions and the names of restricted documents, so it
is not for every staff user (``is_staff`` also lets people create collections). The
role is one Django permission, ``audit.read_audit_log``, held by a user directly or
through a group (an "Auditors" group, say); superusers hold every permission. It is
granted and revoked here only, and each change is itself recorded in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest

from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record

APP_LABEL = "audit"
CODENAME = "read_audit_log"
AUDITOR_PERMISSION = f"{APP_LABEL}.{CODENAME}"


def user_is_auditor(user: Any) -> bool:
    """Whether ``user`` may read and export the audit log (superusers always may)."""
    return bool(user.is_active and user.has_perm(AUDITOR_PERMISSION))


def _permission() -> Permission:
    return Permission.objects.get(content_type__app_label=APP_LABEL, codename=CODENAME)


@dataclass(frozen=True)
class Auditors:
    users: list[str]  # holding the permission directly
    groups: list[str]  # whose members hold it
    superusers: list[str]  # hold it without a grant


def auditors() -> Auditors:
    """Who holds the role, and how."""
    permission = _permission()
    users = get_user_model().objects.filter(is_active=True)
    return Auditors(
        users=sorted(users.filter(user_permissions=permission).values_list("username", flat=True)),
        groups=sorted(Group.objects.filter(permissions=permission).values_list("name", flat=True)),
        superusers=sorted(users.filter(is_superuser=True).values_list("username", flat=True)),
    )


def _holder(user: Any, group: Group | None) -> tuple[Any, dict[str, Any]]:
    if (user is None) == (group is None):
        raise ValueError("Give exactly one of a user or a group.")
    if group is not None:
        return group, {"group": group.name}
    return user, {"user": user.get_username()}


def auditor_grant(
    *, user: Any = None, group: Group | None = None, actor: Any = None, request: HttpRequest | None = None
) -> bool:
    """Give a user or a group the auditor role. Returns False if they held it already.

    ``actor`` is who granted it (``None``: an operator at the shell).
    """
    return _auditor_set(user=user, group=group, held=True, actor=actor, request=request)


def auditor_revoke(
    *, user: Any = None, group: Group | None = None, actor: Any = None, request: HttpRequest | None = None
) -> bool:
    """Take the auditor role from a user or a group. Returns False if they did not hold it.

    A user who is also in an auditor group, or a superuser, keeps reading the log:
    :func:`auditor_sources` says why.
    """
    return _auditor_set(user=user, group=group, held=False, actor=actor, request=request)


def _auditor_set(*, user: Any, group: Group | None, held: bool, actor: Any, request: HttpRequest | None) -> bool:
    """Give (``held``) or take the role, recorded in the same transaction; False if nothing changed."""
    holder, who = _holder(user, group)
    permissions = holder.permissions if group is not None else holder.user_permissions
    with transaction.atomic():
        permission = _permission()
        if permissions.filter(pk=permission.pk).exists() == held:
            return False
        if held:
            permissions.add(permission)
        else:
            permissions.remove(permission)
        audit_record(
            action=AuditEvent.Action.PERMISSION_GRANTED if held else AuditEvent.Action.PERMISSION_REVOKED,
            actor=actor, target=holder, request=request,
            details={"role": "auditor", "permission": AUDITOR_PERMISSION, **who},
        )  # fmt: skip
    return True


def auditor_sources(*, user: Any) -> list[str]:
    """Why ``user`` still holds the role: "superuser", "direct grant", "group NAME"."""
    permission = _permission()
    sources = ["superuser"] if user.is_superuser else []
    if user.user_permissions.filter(pk=permission.pk).exists():
        sources.append("direct grant")
    groups = Group.objects.filter(Q(permissions=permission) & Q(user=user)).values_list("name", flat=True)
    sources += [f"group {name}" for name in sorted(groups)]
    return sources
