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
from assistant.accounts.selectors import user_can
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


def user_add(*, username: str, groups: Sequence[str] = (), password: str = "", email: str = "") -> UserAdded:
    """Create a user, or find the existing one, and put them in ``groups``.

    Groups that do not exist yet are created. An existing user keeps their other
    groups; their password and e-mail change only when given. A new user without a
    password cannot sign in until one is set (``manage.py changepassword``), but can
    be asked for at the shell (``ask --as``). A password the validators refuse
    raises ``ValidationError`` and changes nothing.
    """
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
        if user is None:
            user = user_model(username=username, email=email)
        elif email:
            user.email = email
        if password:
            validate_password(password, user=user)
            user.set_password(password)
        elif created:
            user.set_unusable_password()
        user.save()
        groups_created: list[str] = []
        groups_added: list[str] = []
        current = set(user.groups.values_list("name", flat=True))
        for name in dict.fromkeys(names):
            group, new = Group.objects.get_or_create(name=name)
            if new:
                groups_created.append(name)
            if name not in current:
                user.groups.add(group)
                groups_added.append(name)
    return UserAdded(
        user=user,
        created=created,
        groups_added=groups_added,
        groups_created=groups_created,
        password_set=bool(password),
    )


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
