"""The ids that follow one piece of work through processes: a request id, an ingest id.

Both live in context variables, so they follow a request through ``sync_to_async``
(asgiref copies the context into its thread) and into every log line
(``assistant.ops.logs.ContextFilter``), the LLM call (an ``X-Request-ID`` header) and
the audit record (``details["request_id"]``). A Celery message carries the ingest id
in a header of its own (``assistant.ops.tasks``).
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
ingest_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ingest_id", default=None)

# What an incoming X-Request-ID may be to be kept: a proxy's or client's id (a UUID,
# a hex trace id, "abc-123_x.y"), never free text that would be written into logs,
# headers to the model server and the audit log as it came.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")


def new_id() -> str:
    return uuid.uuid4().hex


def sane_id(value: str | None) -> str | None:
    """``value`` if it is a sane id token (8 to 128 of ``A-Z a-z 0-9 . _ : -``), else None."""
    if value and _SANE.fullmatch(value):
        return value
    return None


def current_request_id() -> str | None:
    return request_id.get()


def current_ingest_id() -> str | None:
    return ingest_id.get()


@contextmanager
def bound(*, request: str | None = None, ingest: str | None = None) -> Iterator[None]:
    """Set the request and/or ingest id for the duration of a block (a task, a command)."""
    tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]] = []
    if request is not None:
        tokens.append((request_id, request_id.set(request)))
    if ingest is not None:
        tokens.append((ingest_id, ingest_id.set(ingest)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
