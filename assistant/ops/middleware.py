"""Each request gets an id, a latency observation by route and one log line.

The id is the caller's ``X-Request-ID`` when that is a sane token (a proxy's or a
client's trace id), else a new one; it is echoed in the response's ``X-Request-ID``
and set in ``assistant.ops.context`` for everything the request does.

The first middleware: it times every response, also those answered by the
middleware below it (static files, redirects, lockouts). For a streamed answer the
time is until the response starts; the answer's own timings are in
``assistant_answer_*``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from assistant.ops import context, metrics

logger = logging.getLogger("assistant.requests")
HEADER = "X-Request-ID"


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return str(match.view_name)
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    return "unmatched"


def _under_id(chunks: Iterable[Any], request_id: str) -> Iterator[Any]:
    token = context.request_id.set(request_id)
    try:
        yield from chunks
    finally:
        with contextlib.suppress(ValueError):  # closed from another context: it never had it set
            context.request_id.reset(token)


async def _under_id_async(chunks: AsyncIterable[Any], request_id: str) -> AsyncIterator[Any]:
    token = context.request_id.set(request_id)
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        with contextlib.suppress(ValueError):
            context.request_id.reset(token)


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _begin(self, request: HttpRequest) -> Any:
        request_id = context.sane_id(request.headers.get(HEADER)) or context.new_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        return context.request_id.set(request_id)

    def _end(self, request: HttpRequest, response: HttpResponseBase, started: float) -> None:
        seconds = time.perf_counter() - started
        route = _route(request)
        response[HEADER] = request.request_id  # type: ignore[attr-defined]
        metrics.observe_request(route=route, method=request.method or "", status=response.status_code, seconds=seconds)
        logger.info(
            "%s %s %s",
            request.method,
            route,
            response.status_code,
            extra={"route": route, "status": response.status_code, "duration_ms": round(seconds * 1000, 1)},
        )

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        token = self._begin(request)
        response = self.get_response(request)
        self._end(request, response, started)
        context.request_id.reset(token)
        if response.streaming:
            # A streamed body is produced after this returns: it sets the id again
            # while it runs, and nothing after it (a test, the next job on this
            # thread) inherits it.
            rid = request.request_id  # type: ignore[attr-defined]
            body = response.streaming_content
            response.streaming_content = _under_id_async(body, rid) if response.is_async else _under_id(body, rid)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Under ASGI each request runs in a task of its own: the id set here is that
        # task's, and its streamed body is produced inside the same task.
        started = time.perf_counter()
        self._begin(request)
        pending: Awaitable[HttpResponseBase] = self.get_response(request)
        response = await pending
        self._end(request, response, started)
        return response
