"""Who is calling: a personal API token, or a signed-in browser session (with CSRF)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenUserRefused, token_authenticate
from assistant.api.errors import ApiError


class TokenAuth(HttpBearer):
    """``Authorization: Bearer <token>``; ``scope`` is the least scope the operation needs."""

    def __init__(self, scope: str = ApiToken.Scope.READ) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        try:
            found = token_authenticate(plaintext=token)
        except TokenUserRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from refused
        if found is None:
            return None
        if self.scope == ApiToken.Scope.WRITE and found.scope != ApiToken.Scope.WRITE:
            raise ApiError(403, "insufficient_scope", "This operation needs a token with the 'write' scope.")
        request.user = found.user
        return found.user


class BrowserSession(SessionAuth):
    """The signed-in browser session; CSRF is checked only when there is a session.

    Without a session cookie there is nothing to forge, and a token client with a
    bad token must hear 401 (authenticate), not a CSRF failure.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if self.param_name not in request.COOKIES:
            return None
        return super()._get_key(request)


# Session users act with their full rights, as in the browser; the session
# authenticator checks the CSRF token on unsafe methods.
READ = [TokenAuth(ApiToken.Scope.READ), BrowserSession()]
WRITE = [TokenAuth(ApiToken.Scope.WRITE), BrowserSession()]


def caller(request: HttpRequest) -> Any:
    """The authenticated user (set by either authenticator)."""
    return request.auth  # type: ignore[attr-defined]
