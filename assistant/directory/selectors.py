"""Reads about where users and groups come from, for the portal's People pages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import Group

from assistant.directory.models import DirectoryAccount, DirectoryGroup, Source


@dataclass(frozen=True)
class Origin:
    """Where an account or a group comes from, and when its source last confirmed it."""

    source: str
    label: str
    last_synced_at: datetime | None = None


LOCAL = Origin(Source.LOCAL, str(Source.LOCAL.label))


def _origin(source: str, when: datetime | None) -> Origin:
    return Origin(source, str(Source(source).label), when)


def user_origins(users: Iterable[Any]) -> dict[int, Origin]:
    """Each user's source: LDAP or SCIM (with the last sync), OIDC (last re-check), or local."""
    from assistant.accounts.models import ExternalIdentity

    ids = [u.pk for u in users]
    found = dict.fromkeys(ids, LOCAL)
    for identity in ExternalIdentity.objects.filter(user_id__in=ids).only("user_id", "last_checked_at"):
        found[identity.user_id] = _origin(Source.OIDC, identity.last_checked_at)
    for account in DirectoryAccount.objects.filter(user_id__in=ids).only("user_id", "source", "last_synced_at"):
        found[account.user_id] = _origin(account.source, account.last_synced_at)
    return found


def group_origins(groups: Iterable[Group]) -> dict[int, Origin]:
    ids = [g.pk for g in groups]
    found = dict.fromkeys(ids, LOCAL)
    for owner in DirectoryGroup.objects.filter(group_id__in=ids).only("group_id", "source", "last_synced_at"):
        found[owner.group_id] = _origin(owner.source, owner.last_synced_at)
    return found
