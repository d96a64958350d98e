"""Write-side operations on users and access."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from assistant.accounts.models import ApiToken, CollectionGrant, Role
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
    return IssuedToken(token=token, plaintext=plaintext)


def token_revoke(*, token: ApiToken) -> bool:
    """Revoke a token at once. Returns False if it was already revoked."""
    return bool(ApiToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now()))


def token_authenticate(*, plaintext: str) -> ApiToken | None:
    """The live token this plaintext names, with its user, or None.

    Malformed, unknown, revoked and expired tokens, and tokens of inactive users,
    all give None: a caller learns nothing about which it was.
    """
    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not hmac.compare_digest(token.token_hash, _token_hash(plaintext.strip())):
        return None
    now = timezone.now()
    if token.revoked_at is not None or token.expires_at <= now or not token.user.is_active:
        return None
    # One write a minute at most, not one per request.
    if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=60):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# --- Collection members --------------------------------------------------------------


def collection_grant(
    *, collection: Collection, role: str, group: Group | None = None, user: Any = None, granted_by: Any = None
) -> CollectionGrant:
    """Give a group or a user ``role`` on a collection (replacing the role they had)."""
    if (group is None) == (user is None):
        raise ValueError("A grant names either a group or a user.")
    if role not in Role.values:
        raise ValueError(f"Unknown role '{role}'.")
    lookup: dict[str, Any] = (
        {"collection": collection, "group": group} if group else {"collection": collection, "user": user}
    )
    grant, _ = CollectionGrant.objects.update_or_create(**lookup, defaults={"role": role})
    return grant


def collection_revoke(*, collection: Collection, group: Group | None = None, user: Any = None) -> bool:
    """Remove a group's or a user's grant on a collection. Returns whether one existed."""
    if (group is None) == (user is None):
        raise ValueError("A revoke names either a group or a user.")
    grants = CollectionGrant.objects.filter(collection=collection)
    grants = grants.filter(group=group) if group else grants.filter(user=user)
    deleted, _ = grants.delete()
    return bool(deleted)
