"""Single sign-on through OpenID Connect (mozilla-django-oidc): the sign-in backend.

Imported only when ``OIDC_RP_CLIENT_ID`` is set (the settings then list the backend
below); with single sign-on off, nothing of the library is loaded.

The library runs the authorization code flow and checks the ID token's signature
and nonce; this backend then matches the account by the token's issuer and subject
(``assistant.accounts.sso.identity_sign_in``), keeps the refresh token for the
periodic re-check, and explains a refused sign-in on the sign-in page.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from assistant.accounts.sso import SignInRefused, identity_sign_in, username_from

logger = logging.getLogger(__name__)


class GroupMappingOIDCBackend(OIDCAuthenticationBackend):
    """Users bound to the provider's (issuer, subject), their groups following the claim."""

    refresh_token = ""

    def get_token(self, payload: dict[str, Any]) -> Any:
        token_info = super().get_token(payload)
        # A new backend instance serves each authenticate() call, so this stays
        # with the sign-in that fetched it.
        self.refresh_token = str(token_info.get("refresh_token") or "") if isinstance(token_info, dict) else ""
        return token_info

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        username = username_from(claims)
        return bool(username) and len(username) <= 150

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # ``payload`` is the verified ID token: its issuer and subject name the person.
        issuer, subject = str(payload.get("iss") or ""), str(payload.get("sub") or "")
        if not issuer or not subject:
            return self._refuse("The identity provider's ID token names no issuer or subject.")
        expected = settings.OIDC_OP_ISSUER
        if expected and issuer != expected:
            return self._refuse(f"The ID token comes from '{issuer}', not from the configured identity provider.")
        audience = payload.get("aud")
        if settings.OIDC_RP_CLIENT_ID not in ([audience] if isinstance(audience, str) else list(audience or [])):
            # The library leaves the audience unchecked: an ID token the provider
            # made for another of its applications must not sign anyone in here.
            return self._refuse("The ID token was issued for another application.")
        claims = self.get_userinfo(access_token, id_token, payload)
        if not isinstance(claims, dict) or str(claims.get("sub", "")) != subject:
            # OpenID Connect Core 5.3.2: userinfo about anyone else must not be used.
            return self._refuse("The identity provider's userinfo is about another subject than its ID token.")
        if not self.verify_claims(claims):
            return self._refuse(f"The identity provider sent no usable '{settings.OIDC_USERNAME_CLAIM}' claim.")
        try:
            return identity_sign_in(issuer=issuer, subject=subject, claims=claims, refresh_token=self.refresh_token)
        except SignInRefused as refusal:
            return self._refuse(str(refusal))

    def _refuse(self, message: str) -> None:
        logger.warning("Single sign-on refused: %s", message)
        request = getattr(self, "request", None)
        if request is not None:
            messages.error(
                request, _("Single sign-on did not sign you in: %(reason)s") % {"reason": message}, fail_silently=True
            )
        return None

    def get_user(self, user_id: Any) -> Any:
        # The library's get_user ignores is_active: a deactivated user's session
        # would go on. Django's own backend refuses them; so does this one.
        user = super().get_user(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
