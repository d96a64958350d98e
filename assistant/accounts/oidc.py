"""Single sign-on through OpenID Connect (mozilla-django-oidc), group mapping included.

Imported only when ``OIDC_RP_CLIENT_ID`` is set (the settings then list the backend
below); with single sign-on off, nothing of the library is loaded.

Users are matched by the ``OIDC_USERNAME_CLAIM`` claim (``preferred_username``)
against accounts single sign-on created itself. A local account with a password of
the same name is never taken over: that sign-in is refused and logged, and an
administrator decides (make the local password unusable to hand the account over).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from assistant.accounts.services import user_groups_sync

logger = logging.getLogger(__name__)


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


class GroupMappingOIDCBackend(OIDCAuthenticationBackend):
    """Creates and updates users from the identity provider's claims, and their groups."""

    def username_from(self, claims: dict[str, Any]) -> str:
        value = claim_value(claims, settings.OIDC_USERNAME_CLAIM)
        return str(value).strip() if isinstance(value, str | int) else ""

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        username = self.username_from(claims)
        return bool(username) and len(username) <= 150

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[Any]:
        username = self.username_from(claims)
        if not username:
            return self.UserModel.objects.none()
        # Only accounts without a usable password: those single sign-on made.
        return self.UserModel.objects.filter(username=username, password__startswith="!")  # noqa: S106 (the unusable-password mark)

    def create_user(self, claims: dict[str, Any]) -> Any:
        username = self.username_from(claims)
        if self.UserModel.objects.filter(username=username).exists():
            logger.warning("Single sign-on refused for %r: a local account with a password has that name", username)
            return None
        user = self.UserModel.objects.create_user(username=username, email=claims.get("email", "") or "")
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        user.email = claims.get("email", user.email) or ""
        user.first_name = str(claims.get("given_name", user.first_name) or "")[:150]
        user.last_name = str(claims.get("family_name", user.last_name) or "")[:150]
        user.save(update_fields=["email", "first_name", "last_name"])
        user_groups_sync(user=user, names=group_names(claims), source="oidc")
        return user
