"""One log event per question: where its time went and how it ended, never what was said.

``answer_stream`` (the one path every surface answers through) writes it once the
answer is stored, on the ``assistant.answers`` logger. Like every log line it carries
the request id (``assistant.ops.logs``), the same id the question's audit record keeps
in ``details["request_id"]``, so an operator can go from a slow or failed answer in the
logs to its audit record and back.

What it holds: the outcome, the passages' count, the model and the server that
answered, the time to the first token and the whole answer's, the answer's own stage
times (``Message.timings``) and each retrieval stage's time. What it never holds: the
question, the passages' or the answer's text, document names or the error's wording.
The audit log keeps the question under rules of its own (readable by auditors only,
the text removed when its author is deleted, purged after ``AUDIT_RETENTION_DAYS``);
log lines are shipped to collectors those rules do not reach (docs/observability.md).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

logger = logging.getLogger("assistant.answers")


def answer_outcome(*, error: bool, stopped: bool, nothing_found: bool) -> str:
    """``answered``; ``nothing_found`` (nothing readable was relevant: the model was not
    asked); ``error`` (the model or the search failed); ``stopped`` (by the asker)."""
    if stopped:
        return "stopped"
    if error:
        return "error"
    return "nothing_found" if nothing_found else "answered"


def server_label(url: str) -> str | None:
    """A server's base URL without credentials or query (``http://vllm:8000/v1``); None when none was asked."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def answer_logged(
    *,
    outcome: str,
    message_id: int,
    conversation_id: int,
    collection_id: int,
    passages: int,
    model: str,
    server: str,
    first_token_ms: int | None,
    latency_ms: int,
    tokens: int,
    timings: dict[str, int],
    stages: dict[str, float],
) -> None:
    """Write the question's summary event (``stages``: seconds per retrieval stage)."""
    logger.log(
        logging.WARNING if outcome == "error" else logging.INFO,
        "question %s: %d passages, first token %s ms, %d ms",
        outcome,
        passages,
        "-" if first_token_ms is None else first_token_ms,
        latency_ms,
        extra={
            "event": "answer",
            "outcome": outcome,
            "message_id": message_id,
            "conversation_id": conversation_id,
            "collection_id": collection_id,
            "passages": passages,
            "model": model or None,
            "llm_server": server_label(server),
            "first_token_ms": first_token_ms,
            "latency_ms": latency_ms,
            "tokens": tokens,
            **timings,
            "retrieval_stages_ms": {stage: round(seconds * 1000, 1) for stage, seconds in sorted(stages.items())},
        },
    )
