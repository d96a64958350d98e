"""Write-side operations on users and access.

Every change of who may see what (the portal, the shell, the API) goes through these
functions and ``ingest.services.document_restrict``: they are the one place to
record such changes. ``actor`` is the person making the change; when given, the
service checks that they manage the collection (``None``: an operator at the shell).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from assistant.accounts.models import ApiToken, CollectionGrant, Role
from assistant.accounts.selectors import user_can, user_can_manage_people
from ingest.models import Collection


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


@dataclass(frozen=True)
class UserAdded:
    user: Any
    created: bool
    groups_added: list[str]
    groups_created: list[str]
    password_set: bool


class UserExists(ValueError):
    """A user of that name exists already (where finding them is not wanted)."""


class GroupNameTaken(ValueError):
    """A group of that name exists already."""


class GroupInUse(ValueError):
    """A group that restricts documents: deleting it would lift their restriction."""


def _require_people_manager(actor: Any, target: Any = None) -> None:
    """``actor`` may manage people (None: an operator at the shell); only a superuser changes a superuser."""
    if actor is None:
        return
    if not user_can_manage_people(actor):
        raise PermissionDenied("You may not manage users and groups.")
    if target is not None and target.is_superuser and not actor.is_superuser:
        raise PermissionDenied("Only a superuser may change a superuser.")


def _people_audit(action: str, *, actor: Any, target: Any, **details: Any) -> None:
    from assistant.audit.services import audit_record

    audit_record(action=action, actor=actor, target=target, details={"source": _source(actor), **details})


def _source(actor: Any) -> str:
    return "shell" if actor is None else "portal"


def _membership_audit(*, group: Group, user: Any, added: bool, actor: Any) -> None:
    # Group membership is access (it opens the group's collections and documents): it
    # is recorded as a permission change, as the single sign-on's group sync does.
    from assistant.audit.models import AuditEvent

    _people_audit(
        AuditEvent.Action.PERMISSION_GRANTED if added else AuditEvent.Action.PERMISSION_REVOKED,
        actor=actor, target=group, group=group.name, user=user.get_username(), membership=True,
    )  # fmt: skip


def user_add(
    *,
    username: str,
    groups: Sequence[str] = (),
    password: str = "",
    email: str = "",
    actor: Any = None,
    existing_ok: bool = True,
) -> UserAdded:
    """Create a user, or find the existing one, and put them in ``groups``.

    Groups that do not exist yet are created. An existing user keeps their other
    groups; their password and e-mail change only when given. A new user without a
    password cannot sign in until one is set (``manage.py changepassword``), but can
    be asked for at the shell (``ask --as``). A password the validators refuse
    raises ``ValidationError`` and changes nothing. ``existing_ok=False`` (the
    portal) refuses an existing name with ``UserExists`` instead. Every creation and
    membership is audited; ``actor`` (None: the shell) must be allowed to manage people.
    """
    from assistant.audit.models import AuditEvent

    _require_people_manager(actor)
    username = username.strip()
    if not username:
        raise ValueError("A user needs a name.")
    names = [g.strip() for g in groups]
    if any(not n for n in names):
        raise ValueError("A group name cannot be empty.")
    user_model = get_user_model()
    with transaction.atomic():
        user = user_model.objects.filter(username=username).first()
        created = user is None
        if user is not None and not existing_ok:
            raise UserExists(f"A user named '{username}' already exists.")
        if user is None:
            user = user_model(username=username, email=email)
        elif email:
            user.email = email
        _require_people_manager(actor, None if created else user)
        if password:
            validate_password(password, user=user)
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        if created:
            _people_audit(
                AuditEvent.Action.USER_CREATED, actor=actor, target=user,
                user=user.get_username(), email=user.email, password_set=bool(password),
            )  # fmt: skip
        groups_created: list[str] = []
        groups_added: list[str] = []
        current = set(user.groups.values_list("name", flat=True))
        for name in dict.fromkeys(names):
            group, new = Group.objects.get_or_create(name=name)
            if new:
                groups_created.append(name)
                _people_audit(AuditEvent.Action.GROUP_CREATED, actor=actor, target=group, group=name)
            if name not in current:
                user.groups.add(group)
                groups_added.append(name)
                _membership_audit(group=group, user=user, added=True, actor=actor)
    return UserAdded(
        user=user,
        created=created,
        groups_added=groups_added,
        groups_created=groups_created,
        password_set=bool(password),
    )


def user_set_active(*, user: Any, active: bool, actor: Any = None) -> bool:
    """Deactivate or reactivate a user. Returns whether anything changed.

    A deactivated user cannot sign in, their sessions and API tokens stop working on
    the next request, and they read nothing; their conversations and grants stay, so
    reactivating them gives everything back. Nobody deactivates themselves (an
    administrator could lock the last one out). A deactivation made here stands
    against the single sign-on: the provider letting them in does not undo it.
    """
    from assistant.accounts.models import ExternalIdentity
    from assistant.audit.models import AuditEvent

    _require_people_manager(actor, user)
    if actor is not None and actor.pk == user.pk and not active:
        raise ValueError("You cannot deactivate yourself.")
    with transaction.atomic():
        changed = bool(type(user).objects.filter(pk=user.pk, is_active=not active).update(is_active=active))
        user.is_active = active
        if not active:
            ExternalIdentity.objects.filter(user=user).update(deactivated_at=None)
        if changed:
            action = AuditEvent.Action.USER_REACTIVATED if active else AuditEvent.Action.USER_DEACTIVATED
            _people_audit(action, actor=actor, target=user, user=user.get_username())
    return changed


def group_create(*, name: str, actor: Any = None) -> Group:
    """Create an empty group (``GroupNameTaken`` if the name is in use)."""
    from assistant.audit.models import AuditEvent

    _require_people_manager(actor)
    name = name.strip()
    if not name:
        raise ValueError("A group needs a name.")
    with transaction.atomic():
        group, created = Group.objects.get_or_create(name=name)
        if not created:
            raise GroupNameTaken(f"A group named '{name}' already exists.")
        _people_audit(AuditEvent.Action.GROUP_CREATED, actor=actor, target=group, group=name)
    return group


def group_rename(*, group: Group, name: str, actor: Any = None) -> Group:
    """Rename a group. Its members, grants and restrictions follow it (they hold its id)."""
    from assistant.audit.models import AuditEvent

    _require_people_manager(actor)
    name = name.strip()
    if not name:
        raise ValueError("A group needs a name.")
    previous = group.name
    if name == previous:
        return group
    with transaction.atomic():
        if Group.objects.filter(name=name).exclude(pk=group.pk).exists():
            raise GroupNameTaken(f"A group named '{name}' already exists.")
        group.name = name
        group.save(update_fields=["name"])
        _people_audit(AuditEvent.Action.GROUP_RENAMED, actor=actor, target=group, group=name, previous=previous)
    return group


def group_delete(*, group: Group, actor: Any = None) -> None:
    """Delete a group: its members leave it and its grants go (each audited).

    Refused with ``GroupInUse`` while the group restricts a document, or the record of
    a removed one: deleting it would silently make those readable by everyone who
    reads the collection. Change the restrictions first.
    """
    from assistant.audit.models import AuditEvent
    from assistant.audit.services import permission_change_record
    from ingest.models import RemovedDocument

    _require_people_manager(actor)
    with transaction.atomic():
        restricting = group.restricted_documents.count()
        if restricting or RemovedDocument.restricted_to_groups.through.objects.filter(group_id=group.pk).exists():
            raise GroupInUse(
                f"The group '{group.name}' restricts {restricting} document(s) (or records of removed ones); "
                "deleting it would make them readable by every reader of their collection."
            )
        for grant in CollectionGrant.objects.select_related("collection", "group").filter(group=group):
            permission_change_record(grant=grant, granted=False, actor=actor)
        members = sorted(group.user_set.values_list("username", flat=True))
        _people_audit(AuditEvent.Action.GROUP_DELETED, actor=actor, target=group, group=group.name, members=members)
        group.delete()


def group_member_add(*, group: Group, user: Any, actor: Any = None) -> bool:
    """Put ``user`` in ``group``; returns whether they were not in it already. Takes effect on the next question."""
    _require_people_manager(actor, user)
    with transaction.atomic():
        if user.groups.filter(pk=group.pk).exists():
            return False
        user.groups.add(group)
        _membership_audit(group=group, user=user, added=True, actor=actor)
    return True


def group_member_remove(*, group: Group, user: Any, actor: Any = None) -> bool:
    """Take ``user`` out of ``group``; returns whether they were in it."""
    _require_people_manager(actor, user)
    with transaction.atomic():
        if not user.groups.filter(pk=group.pk).exists():
            return False
        user.groups.remove(group)
        _membership_audit(group=group, user=user, added=False, actor=actor)
    return True


def _require_manager(actor: Any, collection: Collection) -> None:
    if actor is not None and not user_can(user=actor, collection=collection, role=Role.MANAGE):
        raise PermissionDenied("You do not manage this collection.")


def _grantee(group: Group | None, user: Any) -> dict[str, Any]:
    if (group is None) == (user is None):
        raise ValueError("Name either a group or a user.")
    return {"group": group} if group is not None else {"user": user}


@dataclass(frozen=True)
class GrantChange:
    grant: CollectionGrant
    previous_role: str | None  # None: there was no grant before


def collection_grant(
    *, collection: Collection, role: Role | str, group: Group | None = None, user: Any = None, actor: Any = None
) -> GrantChange:
    """Give a group or a user ``role`` on a collection, replacing the role they had.

    Takes effect on the next question: retrieval reads grants for every question.
    """
    role = Role(role)
    grantee = _grantee(group, user)
    _require_manager(actor, collection)
    from assistant.audit.services import permission_change_record

    with transaction.atomic():
        existing = CollectionGrant.objects.select_for_update().filter(collection=collection, **grantee).first()
        if existing is None:
            grant = CollectionGrant.objects.create(collection=collection, role=role, **grantee)
            permission_change_record(grant=grant, granted=True, actor=actor)
            return GrantChange(grant, None)
        previous = existing.role
        if previous != role:
            existing.role = role
            existing.save(update_fields=["role"])
            permission_change_record(grant=existing, granted=True, actor=actor)
        return GrantChange(existing, previous)


def collection_revoke(
    *, collection: Collection, group: Group | None = None, user: Any = None, actor: Any = None
) -> bool:
    """Take a group's or a user's grant on a collection away. Returns whether there was one.

    The collection's creator and superusers keep their access: it does not come
    from a grant.
    """
    from assistant.audit.services import permission_change_record

    grantee = _grantee(group, user)
    _require_manager(actor, collection)
    with transaction.atomic():
        grants = list(
            CollectionGrant.objects.select_related("group", "user", "collection").filter(
                collection=collection, **grantee
            )
        )
        for grant in grants:
            permission_change_record(grant=grant, granted=False, actor=actor)
            grant.delete()
    return bool(grants)


# --- API tokens ----------------------------------------------------------------------

TOKEN_PREFIX = "ast"  # noqa: S105  (the public marker every token starts with, not a secret)


class TokenRequestInvalid(ValueError):
    """A token request the rules refuse (unknown scope, lifetime out of range)."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str  # shown once; never stored


def _token_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def token_create(*, user: Any, name: str, scope: str = ApiToken.Scope.READ, days: int | None = None) -> IssuedToken:
    """Issue a personal API token. The plaintext is in the result and nowhere else."""
    if scope not in ApiToken.Scope.values:
        raise TokenRequestInvalid(f"Unknown scope '{scope}': use one of {', '.join(ApiToken.Scope.values)}.")
    days = settings.API_TOKEN_DEFAULT_DAYS if days is None else days
    if not 1 <= days <= settings.API_TOKEN_MAX_DAYS:
        raise TokenRequestInvalid(f"A token lives 1 to {settings.API_TOKEN_MAX_DAYS} days.")
    name = name.strip()[:100] or "API token"
    # The prefix is public (it finds the row); the secret part carries 256 bits.
    prefix = secrets.token_hex(6)
    plaintext = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        token_hash=_token_hash(plaintext),
        scope=scope,
        expires_at=timezone.now() + timedelta(days=days),
    )
    _token_audit("token.created", token)
    return IssuedToken(token=token, plaintext=plaintext)


def _token_audit(action: str, token: ApiToken, **details: Any) -> None:
    from assistant.audit.services import audit_record

    audit_record(
        action=action,
        actor=token.user,
        target=token,
        details={"name": token.name, "prefix": token.prefix, "scope": token.scope, **details},
    )


def token_revoke(*, token: ApiToken) -> bool:
    """Revoke a token at once. Returns False if it was already revoked."""
    revoked = bool(ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now()))
    if revoked:
        _token_audit("token.revoked", token)
    return revoked


class TokenUserRefused(Exception):
    """A valid token whose single sign-on user the identity provider does not confirm now."""

    def __init__(self, *, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def token_authenticate(*, plaintext: str) -> ApiToken | None:
    """The live token this plaintext names, with its user, or None.

    Malformed, unknown, revoked and expired tokens, and tokens of inactive users,
    all give None: a caller learns nothing about which it was. A single sign-on
    user is re-checked with the identity provider when due; when it refuses them
    or cannot be reached past the grace time, ``TokenUserRefused`` says so.
    """
    from assistant.accounts.sso import identity_recheck  # deferred: single sign-on is optional

    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None:
        return None
    if not hmac.compare_digest(token.token_hash, _token_hash(plaintext.strip())):
        _token_audit("token.denied", token, reason="wrong secret")
        return None
    now = timezone.now()
    if token.revoked_at is not None or token.expires_at <= now or not token.user.is_active:
        reason = "revoked" if token.revoked_at else ("expired" if token.expires_at <= now else "inactive user")
        _token_audit("token.denied", token, reason=reason)
        return None
    check = identity_recheck(user=token.user)
    if not check.allowed:
        _token_audit("token.denied", token, reason=check.code)
        raise TokenUserRefused(status=check.status, code=check.code, message=check.message)
    # One write a minute at most, not one per request.
    if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=60):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
