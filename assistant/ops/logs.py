"""Structured logs: one JSON object per line, each carrying the request and ingest ids.

``LOG_FORMAT=json`` (``assistant/settings.py``) routes every log record through
``JsonFormatter``; ``text`` keeps the plain lines for a terminal. ``ContextFilter``
sits on the handler either way, so a record always has ``request_id`` and
``ingest_id`` attributes (None outside a request or an ingest task).
Standard library only.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from assistant.ops.context import current_ingest_id, current_request_id

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "request_id", "ingest_id"}
)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``ingest_id`` from the context variables to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        if getattr(record, "ingest_id", None) is None:
            record.ingest_id = current_ingest_id()
        return True


def _safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, ids, ``extra`` fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "ingest_id"):
            value = getattr(record, key, None)
            if value is not None:
                event[key] = value
        event["process"] = record.process
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = _safe(value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: a line is one line whatever a message holds (no raw newlines).
        return json.dumps(event, ensure_ascii=True, default=str)
