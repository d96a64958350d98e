"""The ``Idempotency-Key`` header on uploads and questions (see assistant/chat/idempotency.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import JsonResponse
from ninja import Header, Schema, Status
from ninja.responses import NinjaJSONEncoder

from assistant.api.errors import ApiError
from assistant.chat.idempotency import (
    Claim,
    IdempotencyConflict,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
    request_fingerprint,
)
from assistant.chat.models import IdempotencyKey

IDEMPOTENCY_KEY = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=200,
    description="Retrying with the same key (within 24 hours) returns the first response instead of doing it again.",
)


def claim(*, user: Any, key: str, scope: str, request: Any) -> Claim:
    try:
        return idempotency_claim(user=user, key=key, scope=scope, fingerprint=request_fingerprint(request))
    except IdempotencyConflict as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from exc


def replay(record: IdempotencyKey, *, body: Any = None) -> JsonResponse:
    """The stored response again; ``body``: what of it the caller may still see, if re-checked."""
    response = JsonResponse(record.response if body is None else body, status=record.status_code or 200, safe=False)
    response["Idempotent-Replayed"] = "true"
    return response


def as_json(body: Any, schema: type[Schema]) -> Any:
    """The body exactly as the response schema renders it, for storing and replaying."""
    # Through the same encoder ninja renders responses with (Django's: milliseconds).
    return json.loads(json.dumps(schema.model_validate(body).model_dump(by_alias=True), cls=NinjaJSONEncoder))


def idempotent(
    *,
    user: Any,
    key: str | None,
    scope: str,
    request: Callable[[], Any],
    run: Callable[[], tuple[int, Any]],
    schema: type[Schema],
) -> Any:
    """Run ``run`` once per key: a retry with the same key and request gets the stored response."""
    if key is None:
        status, body = run()
        return Status(status, body)
    claimed = claim(user=user, key=key, scope=scope, request=request())
    if claimed.replay:
        return replay(claimed.record)
    try:
        status, body = run()
    except BaseException:
        idempotency_release(record=claimed.record)
        raise
    idempotency_complete(record=claimed.record, status_code=status, response=as_json(body, schema))
    return Status(status, body)
