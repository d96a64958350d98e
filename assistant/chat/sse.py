"""Server-sent events: the one encoder every streaming surface writes its frames with.

Two frame shapes, one per wire format:

* named answer events (the chat page and the API's ``/ask/stream``):
  ``event: <name>`` then ``data: <JSON>``, the JSON holding the name again as
  ``"event"`` followed by the event's fields (``assistant.chat.events``);
* unnamed data frames (the OpenAI-compatible stream): ``data: <JSON>``, closed by
  ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from django.http import StreamingHttpResponse

from assistant.chat.events import AnswerEvent, event_fields

SSE_DONE = "data: [DONE]\n\n"


def sse_named(name: str, data: Mapping[str, Any]) -> str:
    """A named event whose data repeats its name: ``{"event": name, **data}``."""
    return f"event: {name}\ndata: {json.dumps({'event': name, **data})}\n\n"


def sse_event(event: AnswerEvent, **extra: Any) -> str:
    """An answer event as a named frame; ``extra`` fields follow the event's own."""
    return sse_named(event.name, {**event_fields(event), **extra})


def sse_data(data: Mapping[str, Any]) -> str:
    """An unnamed data frame (OpenAI's chunk stream)."""
    return f"data: {json.dumps(data)}\n\n"


def sse_response(frames: AsyncIterator[str]) -> StreamingHttpResponse:
    """A streamed ``text/event-stream`` response that no cache or proxy holds back."""
    response = StreamingHttpResponse(frames, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # let a fronting nginx pass tokens through
    return response
