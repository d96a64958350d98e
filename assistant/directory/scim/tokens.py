"""SCIM bearer tokens: one per provisioning client, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from assistant.directory.models import ScimToken

PREFIX = "scim"


@dataclass(frozen=True)
class IssuedScimToken:
    token: ScimToken
    plaintext: str


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def scim_token_create(*, name: str) -> IssuedScimToken:
    """Issue a SCIM token; the plaintext is in the result only."""
    from assistant.audit.models import AuditEvent
    from assistant.audit.services import audit_record

    prefix = secrets.token_hex(6)
    plaintext = f"{PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    token = ScimToken.objects.create(
        name=name.strip()[:100] or "SCIM client", prefix=prefix, token_hash=_hash(plaintext)
    )
    audit_record(
        action=AuditEvent.Action.SCIM_TOKEN_CREATED, target=token, details={"name": token.name, "prefix": prefix}
    )
    return IssuedScimToken(token=token, plaintext=plaintext)


def scim_token_revoke(*, token: ScimToken) -> bool:
    from assistant.audit.models import AuditEvent
    from assistant.audit.services import audit_record

    revoked = bool(ScimToken.objects.filter(pk=token.pk, revoked_at=None).update(revoked_at=timezone.now()))
    if revoked:
        audit_record(
            action=AuditEvent.Action.SCIM_TOKEN_REVOKED,
            target=token,
            details={"name": token.name, "prefix": token.prefix},
        )
    return revoked


def scim_token_authenticate(*, plaintext: str) -> ScimToken | None:
    """The live SCIM token this plaintext names, or None. Personal API tokens never match."""
    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    token = ScimToken.objects.filter(prefix=parts[1], revoked_at=None).first()
    if token is None or not hmac.compare_digest(token.token_hash, _hash(plaintext.strip())):
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=60):
        ScimToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
