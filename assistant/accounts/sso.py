"""Single sign-on accounts: bound to the provider's issuer and subject, and re-checked.

A sign-in at the identity provider is matched by ``(issuer, subject)`` (an
``ExternalIdentity``), never by a user name the provider may hand to someone else
later (``identity_sign_in``). After it, the provider's word on the account and its
groups is asked again server-side at most every ``OIDC_RECHECK_SECONDS``, on the
next page, API call or token use (``identity_recheck``): the stored refresh token
is exchanged at the token endpoint and the userinfo endpoint gives the groups.

Nothing here imports mozilla-django-oidc: the middleware and the token check call
this module whether single sign-on is on or not.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from assistant.accounts.models import ExternalIdentity

logger = logging.getLogger(__name__)

# The longest error text of the provider kept in the audit log.
_REASON_CHARS = 200


# --- Claims ------------------------------------------------------------------------


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


def claim_value(claims: dict[str, Any], path: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def group_names(claims: dict[str, Any]) -> list[str]:
    """The group names the identity provider gives this user (``OIDC_GROUPS_CLAIM``)."""
    value = claim_value(claims, settings.OIDC_GROUPS_CLAIM)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        return []
    names = {str(v).strip().lstrip("/")[:150] for v in value if isinstance(v, str | int) and str(v).strip()}
    return sorted(n for n in names if n)


def username_from(claims: dict[str, Any]) -> str:
    """The user name a new account gets (``OIDC_USERNAME_CLAIM``); empty when there is none."""
    value = claim_value(claims, settings.OIDC_USERNAME_CLAIM)
    return str(value).strip() if isinstance(value, str | int) else ""


# --- The stored refresh token --------------------------------------------------------
# Encrypted with a key derived from SECRET_KEY (and its fallbacks, so a key rotation
# keeps working): a database dump or backup holds no usable token. A token that no
# longer decrypts reads as none, and the account must sign in again.


def _fernet() -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet(
        [Fernet(base64.urlsafe_b64encode(hashlib.sha256(f"sso-refresh-token:{key}".encode()).digest())) for key in keys]
    )


def refresh_token_seal(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def refresh_token_open(sealed: str) -> str:
    from cryptography.fernet import InvalidToken

    if not sealed:
        return ""
    try:
        return str(_fernet().decrypt(sealed.encode()).decode())
    except InvalidToken:
        return ""


# --- Sign-in -------------------------------------------------------------------------


class SignInRefused(Exception):
    """A sign-in at the provider that does not get an account here; the message says why."""


def _audit(action: str, user: Any, *, by_user: bool = True, **details: Any) -> None:
    """Record an event about ``user``; ``by_user=False``: the system acted, not they."""
    from assistant.audit.services import audit_record

    username = user.get_username() if user is not None else details.pop("username", "")
    audit_record(
        action=action, actor=user if by_user else None, target=user,
        details={"source": "oidc", "user": username, **details},
    )  # fmt: skip


def _legacy_bindable(user: Any, now: Any) -> bool:
    """Whether an account made by single sign-on before identities were stored may be bound.

    Only an active account without a usable password (single sign-on made it, or an
    administrator handed it over) and with a sign-in within ``OIDC_LEGACY_BIND_DAYS``:
    a user name the provider recycled after its holder left years ago stays unbound.
    """
    days = settings.OIDC_LEGACY_BIND_DAYS
    return (
        days > 0
        and user.is_active
        and not user.has_usable_password()
        and not ExternalIdentity.objects.filter(user=user).exists()
        and user.last_login is not None
        and user.last_login >= now - timedelta(days=days)
    )


def identity_sign_in(*, issuer: str, subject: str, claims: dict[str, Any], refresh_token: str) -> Any:
    """The user an interactive sign-in at the provider is, created or bound as needed.

    ``claims`` are the userinfo claims (their ``sub`` already checked against the ID
    token's). A known ``(issuer, subject)`` is its user, whatever name the claims
    carry now. A new subject gets a new account, unless the claimed user name is
    taken: then only a legacy account (``_legacy_bindable``) is bound, and any other
    account is refused with ``SignInRefused`` (audited), never taken over. A user the
    re-check deactivated is active again (the provider just let them in); one an
    administrator deactivated stays refused. Profile and groups follow the claims.
    """
    try:
        return _sign_in(issuer=issuer, subject=subject, claims=claims, refresh_token=refresh_token)
    except SignInRefused as refusal:
        # Recorded outside the sign-in's transaction, which the refusal rolled back.
        _audit("sso.refused", None, username=username_from(claims), issuer=issuer, subject=subject, reason=str(refusal))
        raise


def _sign_in(*, issuer: str, subject: str, claims: dict[str, Any], refresh_token: str) -> Any:
    user_model = get_user_model()
    now = timezone.now()
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_for_update()
            .select_related("user")
            .filter(issuer=issuer, subject=subject)
            .first()
        )
        if identity is not None:
            user = identity.user
            if not user.is_active:
                if identity.deactivated_at is None:
                    raise SignInRefused("This account has been deactivated by an administrator.")
                user.is_active = True
                user.save(update_fields=["is_active"])
                identity.deactivated_at = None
                _audit("user.reactivated", user, issuer=issuer, reason="signed in at the identity provider")
        else:
            username = username_from(claims)
            existing = user_model.objects.filter(username=username).first()
            if existing is None:
                user = user_model.objects.create_user(username=username, email=claims.get("email", "") or "")
                bound = "new account"
            elif _legacy_bindable(existing, now):
                user, bound = existing, "existing single sign-on account"
            else:
                raise SignInRefused(
                    f"The user name '{username}' belongs to another account here, so single sign-on cannot use "
                    "it. Ask an administrator to rename that account or to bind it to your sign-in."
                )
            identity = ExternalIdentity(user=user, issuer=issuer, subject=subject)
            _audit("sso.bound", user, issuer=issuer, subject=subject, bound=bound)
        identity.refresh_token = refresh_token_seal(refresh_token)
        identity.last_checked_at = now
        identity.save()
        _profile_update(user, claims)
        user_groups_sync(user=user, names=group_names(claims), source="oidc")
    return user


def _profile_update(user: Any, claims: dict[str, Any]) -> None:
    user.email = claims.get("email", user.email) or ""
    user.first_name = str(claims.get("given_name", user.first_name) or "")[:150]
    user.last_name = str(claims.get("family_name", user.last_name) or "")[:150]
    user.save(update_fields=["email", "first_name", "last_name"])


# --- The periodic re-check -----------------------------------------------------------


@dataclass(frozen=True)
class ProviderAnswer:
    """What the provider said about an account: ``confirmed``, ``refused`` or ``unreachable``."""

    kind: str
    claims: dict[str, Any] = field(default_factory=dict)
    refresh_token: str = ""  # a rotated refresh token, to keep whatever came after it
    reason: str = ""


@dataclass(frozen=True)
class Recheck:
    """Whether a single sign-on user may go on; when not, the HTTP status and why."""

    allowed: bool
    status: int = 200
    code: str = ""
    message: str = ""


ALLOWED = Recheck(allowed=True)
REFUSED = Recheck(
    allowed=False, status=401, code="sso_account_refused",
    message="The identity provider no longer confirms this account (it may be disabled or signed out there), "
    "so it is deactivated here; sign in again with single sign-on to continue.",
)  # fmt: skip


def _provider_error(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or f"HTTP {response.status_code}")
    description = str(body.get("error_description") or "")
    return f"{error}: {description}"[:_REASON_CHARS] if description else error[:_REASON_CHARS]


def provider_ask(*, refresh_token: str, subject: str) -> ProviderAnswer:
    """Exchange the refresh token and read the userinfo claims of ``subject``.

    ``refused``: the provider turned the account down (``invalid_grant`` at the
    token endpoint: disabled, signed out, refresh token expired or revoked; the
    userinfo endpoint refusing a fresh access token; another subject). Anything
    else that fails (no answer, a server error, this site's client refused) is
    ``unreachable``: not the user's doing, so nobody is deactivated for it.
    """
    import requests

    if not settings.OIDC_ENABLED:
        return ProviderAnswer("unreachable", reason="single sign-on is switched off")
    if not refresh_token:
        return ProviderAnswer("refused", reason="no refresh token: the provider gave none, or it was lost")
    timeout = settings.OIDC_TIMEOUT
    options: dict[str, Any] = {
        "verify": getattr(settings, "OIDC_VERIFY_SSL", True),
        "proxies": getattr(settings, "OIDC_PROXY", None),
    }
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": settings.OIDC_RP_CLIENT_ID}
    auth = None
    if getattr(settings, "OIDC_TOKEN_USE_BASIC_AUTH", False):
        auth = requests.auth.HTTPBasicAuth(settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET)
    else:
        data["client_secret"] = settings.OIDC_RP_CLIENT_SECRET
    try:
        response = requests.post(settings.OIDC_OP_TOKEN_ENDPOINT, data=data, auth=auth, timeout=timeout, **options)
    except requests.RequestException as exc:
        return ProviderAnswer("unreachable", reason=f"token endpoint: {type(exc).__name__}")
    if response.status_code != 200:
        reason = _provider_error(response)
        kind = "refused" if reason.startswith("invalid_grant") else "unreachable"
        return ProviderAnswer(kind, reason=f"token endpoint: {reason}")
    try:
        tokens = response.json()
        access_token = str(tokens["access_token"])
    except (ValueError, KeyError, TypeError):
        return ProviderAnswer("unreachable", reason="token endpoint: no access token in the answer")
    rotated = str(tokens.get("refresh_token") or refresh_token)
    try:
        info = requests.get(
            settings.OIDC_OP_USER_ENDPOINT,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=timeout,
            **options,
        )
    except requests.RequestException as exc:
        return ProviderAnswer("unreachable", refresh_token=rotated, reason=f"userinfo: {type(exc).__name__}")
    if info.status_code in (401, 403):
        return ProviderAnswer("refused", refresh_token=rotated, reason=f"userinfo: {_provider_error(info)}")
    try:
        claims = info.json() if info.status_code == 200 else None
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        return ProviderAnswer("unreachable", refresh_token=rotated, reason=f"userinfo: HTTP {info.status_code}")
    if str(claims.get("sub", "")) != subject:
        return ProviderAnswer("refused", refresh_token=rotated, reason="userinfo names another subject")
    return ProviderAnswer("confirmed", claims=claims, refresh_token=rotated)


def identity_recheck(*, user: Any) -> Recheck:
    """Ask the provider again about a single sign-on user whose last check is too old.

    Called for every signed-in request (``SsoRecheckMiddleware``) and every API
    token use; users without an identity, and identities checked within
    ``OIDC_RECHECK_SECONDS``, cost one query and no call to the provider.
    Confirmed: groups follow the claim (each change audited). Refused: the user is
    deactivated (audited), their sessions end and their tokens stop. Unreachable:
    fail closed once ``OIDC_RECHECK_GRACE_SECONDS`` past the due time.
    """
    identity = ExternalIdentity.objects.filter(user_id=user.pk).only("pk", "last_checked_at", "deactivated_at").first()
    if identity is None:
        return ALLOWED
    if identity.deactivated_at is not None or not user.is_active:
        # Already refused (by an earlier check, or by an administrator): no new
        # call and no new record, the request is simply not let through.
        return REFUSED
    interval = timedelta(seconds=settings.OIDC_RECHECK_SECONDS)
    if timezone.now() - identity.last_checked_at < interval:
        return ALLOWED
    # One check at a time per identity, under a row lock held across the provider
    # call: with rotating refresh tokens, two concurrent exchanges of the same token
    # look like a stolen token and providers revoke the whole family.
    with transaction.atomic():
        identity = ExternalIdentity.objects.select_for_update().select_related("user").get(pk=identity.pk)
        now = timezone.now()
        if now - identity.last_checked_at < interval:
            return ALLOWED  # another request checked meanwhile
        answer = provider_ask(refresh_token=refresh_token_open(identity.refresh_token), subject=identity.subject)
        if answer.refresh_token:
            identity.refresh_token = refresh_token_seal(answer.refresh_token)
        if answer.kind == "confirmed":
            identity.last_checked_at = now
            identity.save(update_fields=["refresh_token", "last_checked_at"])
            user_groups_sync(user=identity.user, names=group_names(answer.claims), source="oidc recheck")
            return ALLOWED
        if answer.kind == "refused":
            identity.refresh_token = ""
            identity.deactivated_at = now
            identity.save(update_fields=["refresh_token", "deactivated_at"])
            account = identity.user
            account.is_active = False
            account.save(update_fields=["is_active"])
            _audit("user.deactivated", account, by_user=False, issuer=identity.issuer, reason=answer.reason)
            logger.warning("Single sign-on user %s deactivated: %s", account.get_username(), answer.reason)
            return REFUSED
        identity.save(update_fields=["refresh_token"])
    grace = timedelta(seconds=settings.OIDC_RECHECK_GRACE_SECONDS)
    logger.warning("Single sign-on re-check of %s failed: %s", user.get_username(), answer.reason)
    if now - identity.last_checked_at < interval + grace:
        return ALLOWED
    return Recheck(
        allowed=False, status=503, code="identity_provider_unavailable",
        message="Your access could not be confirmed because the identity provider did not answer "
        f"({answer.reason}); try again when it is reachable.",
    )  # fmt: skip
