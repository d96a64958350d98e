"""Write-side of the company directory: sign-in, memberships, deprovisioning, the sync.

The directory (LDAP) and SCIM clients own the users and groups they made
(``DirectoryAccount``, ``DirectoryGroup``): their memberships follow the directory
and nothing else, while local groups and local accounts are never touched. A
directory user whose name a local account already holds is refused, not bound.
Every membership change is audited as ``permission.granted`` / ``permission.revoked``
with its source, as the portal's and single sign-on's are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from assistant.directory.models import DirectoryAccount, DirectoryGroup, Source

logger = logging.getLogger(__name__)


class DirectorySignInRefused(Exception):
    """A directory person who gets no account here; the message says why."""


def _audit(action: str, *, target: Any = None, **details: Any) -> None:
    from assistant.audit.services import audit_record

    audit_record(action=action, target=target, details=details)


# --- Sessions and tokens -------------------------------------------------------------


def user_sessions_end(*, user: Any) -> int:
    """Delete every stored session of ``user``; returns how many."""
    from django.contrib.sessions.models import Session

    ended = 0
    key = str(user.pk)
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == key:
            session.delete()
            ended += 1
    return ended


def account_deprovision(*, user: Any, source: str, reason: str) -> bool:
    """Take a directory user's access away at once: deactivated, sessions ended, tokens revoked.

    Called when the directory no longer has them (the sync) or a SCIM client
    disables or deletes them. Returns whether they were active. Their conversations
    and audit trail stay; a later sign-in (LDAP) or re-activation (SCIM) gives the
    account back, unless an administrator deactivated it.
    """
    from assistant.accounts.models import ApiToken
    from assistant.accounts.services import token_revoke
    from assistant.audit.models import AuditEvent

    with transaction.atomic():
        was_active = bool(type(user).objects.filter(pk=user.pk, is_active=True).update(is_active=False))
        user.is_active = False
        if was_active:
            # Only what the source took away may the source give back: an account an
            # administrator deactivated stays deactivated whatever the directory says.
            DirectoryAccount.objects.filter(user=user, deprovisioned_at=None).update(deprovisioned_at=timezone.now())
        tokens = 0
        for token in ApiToken.objects.filter(user=user, revoked_at=None):
            tokens += token_revoke(token=token)
        sessions = user_sessions_end(user=user)
        if was_active:
            _audit(
                AuditEvent.Action.USER_DEACTIVATED, target=user, source=source, user=user.get_username(),
                reason=reason, tokens_revoked=tokens, sessions_ended=sessions,
            )  # fmt: skip
    return was_active


# --- Groups --------------------------------------------------------------------------


def directory_group_claim(*, name: str, source: str, external_id: str = "", take_over: bool = False) -> Group | None:
    """The product group ``name`` owned by ``source``, created if missing.

    A group of that name owned by someone else (a local group, another source) is
    left alone and None returned, unless ``take_over`` (an administrator mapped the
    directory group onto it explicitly).
    """
    from assistant.audit.models import AuditEvent

    group, created = Group.objects.get_or_create(name=name[:150])
    if created:
        _audit(AuditEvent.Action.GROUP_CREATED, target=group, group=group.name, source=source)
    owner = DirectoryGroup.objects.filter(group=group).first()
    if owner is None:
        if not created and not take_over:
            logger.warning("Directory group '%s' not mirrored: a %s group of that name exists", name, "local")
            return None
        owner = DirectoryGroup.objects.create(group=group, source=source, external_id=external_id)
    elif owner.source != source:
        return None
    if external_id and owner.external_id != external_id:
        owner.external_id = external_id
    owner.last_synced_at = timezone.now()
    owner.save()
    return group


def memberships_apply(*, user: Any, groups: Iterable[Group], source: str) -> tuple[list[str], list[str]]:
    """Make ``user``'s memberships in the groups ``source`` owns exactly ``groups``.

    Groups of other sources and local groups keep their members. Each change is
    audited. Returns ``(added, removed)`` group names.
    """
    from assistant.audit.models import AuditEvent

    wanted = {g.pk: g for g in groups}
    current = {g.pk: g for g in user.groups.filter(directory_group__source=source)}
    added = [wanted[pk] for pk in wanted.keys() - current.keys()]
    removed = [current[pk] for pk in current.keys() - wanted.keys()]
    with transaction.atomic():
        for group in added:
            user.groups.add(group)
            _audit(
                AuditEvent.Action.PERMISSION_GRANTED, target=group, group=group.name,
                user=user.get_username(), membership=True, source=source,
            )  # fmt: skip
        for group in removed:
            user.groups.remove(group)
            _audit(
                AuditEvent.Action.PERMISSION_REVOKED, target=group, group=group.name,
                user=user.get_username(), membership=True, source=source,
            )  # fmt: skip
    return sorted(g.name for g in added), sorted(g.name for g in removed)


def ldap_product_groups(person: Any) -> list[Group]:
    """The product groups a directory person's groups map to (``LDAP_GROUP_MAP`` or mirrored).

    With a map, only mapped groups count: each key is a group's DN or cn (any case),
    its value the product group (which the directory then owns). Without one, every
    directory group is mirrored as ``LDAP_GROUP_PREFIX`` + its cn; with an empty
    prefix, a local group of the same name is left alone (not mirrored).
    """
    mapping = {str(k).lower(): str(v) for k, v in (settings.LDAP_GROUP_MAP or {}).items()}
    result: dict[int, Group] = {}
    for entry in person.groups:
        if mapping:
            name = mapping.get(entry.dn.lower()) or mapping.get(entry.name.lower())
            take_over = True
        else:
            name = f"{settings.LDAP_GROUP_PREFIX}{entry.name}" if entry.name else None
            # Names under the prefix belong to the directory: an administrator may make
            # "ldap:board" ahead of the first sign-in to restrict documents to it.
            take_over = bool(settings.LDAP_GROUP_PREFIX)
        if not name:
            continue
        group = directory_group_claim(name=name, source=Source.LDAP, external_id=entry.dn, take_over=take_over)
        if group is not None:
            result[group.pk] = group
    return list(result.values())


# --- LDAP sign-in and sync -----------------------------------------------------------


def _profile_update(user: Any, person: Any) -> None:
    user.email = person.email[:254]
    user.first_name = person.first_name[:150]
    user.last_name = person.last_name[:150]
    user.save(update_fields=["email", "first_name", "last_name", "is_active"])


def ldap_account(*, person: Any) -> Any:
    """The user a directory person is here, created on their first sign-in.

    Matched by the entry's unique id; a new person gets a new account unless the
    user name is taken, which is refused (``DirectorySignInRefused``, audited): a
    local account is never taken over. An account the directory had taken away is
    active again (the directory just vouched for it); one an administrator
    deactivated stays refused. Profile and groups follow the directory.
    """
    from assistant.audit.models import AuditEvent

    try:
        with transaction.atomic():
            return _ldap_account(person)
    except DirectorySignInRefused as refusal:
        _audit(AuditEvent.Action.DIRECTORY_REFUSED, source=Source.LDAP, user=person.username, reason=str(refusal))
        raise


def _ldap_account(person: Any) -> Any:
    from assistant.audit.models import AuditEvent

    user_model = get_user_model()
    now = timezone.now()
    account = (
        DirectoryAccount.objects.select_for_update()
        .select_related("user")
        .filter(source=Source.LDAP, external_id=person.external_id)
        .first()
    )
    if account is None:
        username = person.username[:150]
        if user_model.objects.filter(username=username).exists():
            raise DirectorySignInRefused(
                f"The user name '{username}' belongs to another account here, so the directory cannot use it."
            )
        user = user_model.objects.create_user(username=username, email=person.email)
        account = DirectoryAccount.objects.create(user=user, source=Source.LDAP, external_id=person.external_id)
        _audit(AuditEvent.Action.USER_CREATED, target=user, source=Source.LDAP, user=username, dn=person.dn)
    user = account.user
    if not user.is_active:
        if account.deprovisioned_at is None:
            raise DirectorySignInRefused("This account has been deactivated by an administrator.")
        user.is_active = True
        account.deprovisioned_at = None
        _audit(AuditEvent.Action.USER_REACTIVATED, target=user, source=Source.LDAP, user=user.get_username())
    account.dn = person.dn
    account.last_synced_at = now
    account.save()
    _profile_update(user, person)
    memberships_apply(user=user, groups=ldap_product_groups(person), source=Source.LDAP)
    return user


@dataclass
class SyncReport:
    checked: int = 0
    updated: list[str] = field(default_factory=list)
    deprovisioned: list[str] = field(default_factory=list)
    memberships_added: int = 0
    memberships_removed: int = 0


def directory_sync() -> SyncReport:
    """Bring every directory user's groups up to date; take access from those gone.

    A user is gone when the service account no longer finds their user name, or
    finds it on another entry (a new person with a recycled name). If the
    directory cannot be reached the sync stops (``DirectoryUnavailable``) before
    changing anything: an outage never deactivates anyone.
    """
    from assistant.audit.models import AuditEvent
    from assistant.directory.ldapclient import Directory

    report = SyncReport()
    accounts = list(DirectoryAccount.objects.select_related("user").filter(source=Source.LDAP).order_by("pk"))
    with Directory() as directory:
        # Every answer first, then the changes: a failure half-way changes nothing.
        found = {account.pk: directory.find(account.user.get_username()) for account in accounts}
    for account in accounts:
        report.checked += 1
        user, person = account.user, found[account.pk]
        with transaction.atomic():
            if person is None or person.external_id != account.external_id:
                if user.is_active:
                    account_deprovision(user=user, source=Source.LDAP, reason="no longer in the directory")
                    report.deprovisioned.append(user.get_username())
                _, removed = memberships_apply(user=user, groups=[], source=Source.LDAP)
                report.memberships_removed += len(removed)
                continue
            account.dn = person.dn
            account.last_synced_at = timezone.now()
            account.save(update_fields=["dn", "last_synced_at"])
            if user.is_active:
                _profile_update(user, person)
            added, removed = memberships_apply(user=user, groups=ldap_product_groups(person), source=Source.LDAP)
            report.memberships_added += len(added)
            report.memberships_removed += len(removed)
            if added or removed:
                report.updated.append(user.get_username())
    _audit(
        AuditEvent.Action.DIRECTORY_SYNCED, source=Source.LDAP, checked=report.checked, updated=report.updated,
        deprovisioned=report.deprovisioned,
    )  # fmt: skip
    return report
