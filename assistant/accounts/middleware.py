"""Signed-in sessions of single sign-on users follow the identity provider's word."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from assistant.accounts.sso import identity_recheck


def _refusal(request: HttpRequest) -> HttpResponseBase | None:
    """The response for a session the provider no longer backs, or None to go on."""
    user = request.user
    if not user.is_authenticated:
        return None
    result = identity_recheck(user=user)
    if result.allowed:
        return None
    if result.status == 401:
        # Signed out here: the page asks for a sign-in (the API answers 401), and
        # the sign-in page says why.
        logout(request)
        messages.error(request, result.message, fail_silently=True)
        return None
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"error": {"code": result.code, "message": result.message}}, status=result.status)
    return HttpResponse(result.message, status=result.status, content_type="text/plain; charset=utf-8")


class SsoRecheckMiddleware:
    """Runs ``identity_recheck`` for the signed-in user of each request.

    A refused account is signed out; when the provider cannot be reached past the
    grace time, the request is answered 503 and the session kept for later.
    Users without a single sign-on identity cost one indexed query.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return _refusal(request) or self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        refusal = await sync_to_async(_refusal)(request)
        if refusal is not None:
            return refusal
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return await response
