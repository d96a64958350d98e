"""Write-side operations on users and access."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction


def admin_bootstrap(*, username: str, password: str = "", email: str = "") -> tuple[bool, str]:
    """Create the first administrator unless one exists.

    Returns ``(created, password)``; the password is generated when none is given
    and is returned only at creation, so it can be shown exactly once.
    """
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return False, ""
    password = password or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email=email, password=password)
    return True, password


def user_groups_sync(*, user: Any, names: Sequence[str], source: str = "") -> tuple[list[str], list[str]]:
    """Make ``user``'s group memberships exactly ``names``, creating missing groups.

    Used by single sign-on, where the identity provider owns the groups: a group no
    longer named there is left on the next sign-in. Each change is audited. Returns
    ``(added, removed)`` group names.
    """
    from django.contrib.auth.models import Group

    from assistant.audit.models import AuditEvent
    from assistant.audit.services import audit_record

    wanted = set(names)
    current = {g.name: g for g in user.groups.all()}
    added = sorted(wanted - current.keys())
    removed = sorted(current.keys() - wanted)
    with transaction.atomic():
        for name in added:
            group, _ = Group.objects.get_or_create(name=name)
            user.groups.add(group)
            audit_record(
                action=AuditEvent.Action.PERMISSION_GRANTED, target=group,
                details={"group": name, "user": user.get_username(), "membership": True, "source": source},
            )  # fmt: skip
        for name in removed:
            user.groups.remove(current[name])
            audit_record(
                action=AuditEvent.Action.PERMISSION_REVOKED, target=current[name],
                details={"group": name, "user": user.get_username(), "membership": True, "source": source},
            )  # fmt: skip
    return added, removed
