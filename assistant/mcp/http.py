"""The MCP endpoint at ``/mcp``, beside the Django site under the same ASGI server.

``with_mcp`` routes ``/mcp`` to the SDK's streamable HTTP app behind ``TokenDoor`` and
everything else to Django, untouched (its middleware, CSP included, applies to its
routes as before). The door admits a request the way the REST API does: a host named
in ``DJANGO_ALLOWED_HOSTS``, a personal API token as the bearer (``read`` suffices),
and at most ``MCP_REQUESTS_PER_MINUTE`` requests per token. The SDK binds each MCP
session to the token that opened it.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.accounts.services import TokenUserRefused, token_authenticate
from assistant.accounts.throttle import token_throttle
from assistant.mcp.calls import Caller, in_django
from assistant.mcp.server import CALLER_KEY, build_server

PATH = "/mcp"


async def _refuse(send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw = {"content-type": "application/json", "cache-control": "no-store", "x-content-type-options": "nosniff",
           **(headers or {})}  # fmt: skip
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), v.encode()) for k, v in raw.items()],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _django_request(scope: Scope, headers: Headers) -> HttpRequest:
    """Just enough of a Django request for the audit log to read the client address the usual way."""
    request = HttpRequest()
    client = scope.get("client") or ("", 0)
    request.META = {"REMOTE_ADDR": client[0], "HTTP_X_FORWARDED_FOR": headers.get("x-forwarded-for", "")}
    return request


class TokenDoor:
    """Host check, bearer token and rate limit in front of the MCP app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        domain, _port = split_domain_port(headers.get("host", ""))
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            await _refuse(send, 400, "bad_request", "This host name is not served here.")
            return
        scheme, _, plaintext = headers.get("authorization", "").partition(" ")
        challenge = {"www-authenticate": 'Bearer realm="assistant"'}
        if scheme.lower() != "bearer" or not plaintext.strip():
            needed = "A personal API token is required: Authorization: Bearer <token>."
            await _refuse(send, 401, "unauthenticated", needed, challenge)
            return
        try:
            token = await in_django(token_authenticate, plaintext=plaintext)
        except TokenUserRefused as refused:
            await _refuse(send, refused.status, refused.code, refused.message)
            return
        if token is None:
            await _refuse(send, 401, "unauthenticated", "The token is invalid, expired or revoked.", challenge)
            return
        wait = await in_django(token_throttle, token_id=token.pk, per_minute=settings.MCP_REQUESTS_PER_MINUTE)
        if wait:
            await _refuse(send, 429, "throttled", f"Too many requests with this token; retry in {wait} s.",
                          {"retry-after": str(wait)})  # fmt: skip
            return
        # The SDK binds a session to this principal: another token cannot use it.
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token=token.prefix, client_id=f"api-token-{token.pk}", scopes=[token.scope], subject=str(token.user_id)
            )
        )
        caller = Caller(user=token.user, transport="http", token=token.prefix, request=_django_request(scope, headers))
        scope["state"] = {**scope.get("state", {}), CALLER_KEY: caller}
        await self.app(scope, receive, send)


def with_mcp(django_app: Any) -> ASGIApp:
    """The product's ASGI application: ``/mcp`` to the MCP server, the rest to Django."""
    # The door checks hosts against DJANGO_ALLOWED_HOSTS; the SDK's own check would
    # only know loopback names.
    mcp_app = TokenDoor(
        build_server().streamable_http_app(
            streamable_http_path=PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
    )

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "lifespan" or (scope["type"] == "http" and (path == PATH or path.startswith(PATH + "/"))):
            # The MCP app's lifespan runs the SDK's session manager; Django has none.
            await mcp_app(scope, receive, send)
            return
        await django_app(scope, receive, send)

    return application
