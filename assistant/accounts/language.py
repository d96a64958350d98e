"""The language the interface speaks to a user.

Anonymous pages (the sign-in page) follow the browser: Django's ``LocaleMiddleware``
reads the language cookie, then Accept-Language. A signed-in user's stored choice
(``Preference.language``) replaces that on every request, so it follows them to any
browser; an empty choice leaves it to the browser.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils import translation

from assistant.accounts.models import Preference


def languages() -> list[tuple[str, str]]:
    """The interface's languages as (code, name in that language)."""
    return [(code, name) for code, name in settings.LANGUAGES]


def language_of(*, user: Any) -> str:
    """The user's chosen language code, or "" when the browser decides (one indexed query)."""
    if not getattr(user, "is_authenticated", False):
        return ""
    stored = Preference.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
    return stored or ""


def language_set(*, user: Any, language: str) -> Preference:
    """Store the user's interface language ("" hands the choice back to the browser)."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"Unknown language {language!r}.")
    preference, _ = Preference.objects.update_or_create(user=user, defaults={"language": language})
    return preference


def _stored(request: HttpRequest) -> str:
    return language_of(user=request.user)


def _activate(request: HttpRequest, language: str) -> None:
    if language:
        translation.activate(language)
        request.LANGUAGE_CODE = language


class UserLanguageMiddleware:
    """Activates the signed-in user's stored language (after authentication)."""

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
        _activate(request, _stored(request))
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Read in a thread, activated here: the activation belongs to this request's context.
        _activate(request, await sync_to_async(_stored)(request))
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return await response
