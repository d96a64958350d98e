"""Prometheus metrics: the instruments, and the small calls the product makes into them.

The rest of the code calls ``observe_answer``, ``stage_timer`` (and ``stages_timed``
for one question's own stage times), ``observe_request`` and ``observe_task``; the
instruments themselves stay here, so their names, labels and buckets are defined
once. Values collected at scrape time (documents by status, index sizes, queue
depths) come from ``assistant.ops.collectors``.

Every label has a bounded set of values: routes are URL pattern names, never paths;
models are the model ids the server reported; stages, outcomes and task names are
fixed by the code.

Several processes: each process keeps its own values. Without
``PROMETHEUS_MULTIPROC_DIR`` a scrape of ``/metrics`` sees the process that answered
it (docs/observability.md); with it (set for every web and worker process, an empty
folder at start) every process writes its values there and a scrape sums them.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

# Latencies from a millisecond to two minutes (a slow model's whole answer).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_STAGE_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TASK_SECONDS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0)
_TOKENS_PER_SECOND = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640)

REQUEST_SECONDS = Histogram(
    "assistant_http_request_duration_seconds",
    "Time until the response (its headers, for a stream) per route (URL pattern name).",
    ["route", "method"],
    buckets=_SECONDS,
)
RESPONSES = Counter("assistant_http_responses", "Responses per route and status code.", ["route", "method", "status"])

FIRST_TOKEN_SECONDS = Histogram(
    "assistant_answer_first_token_seconds",
    "From the question to the first answer token the model streamed (rewrite and retrieval included).",
    ["model"],
    buckets=_SECONDS,
)
ANSWER_SECONDS = Histogram(
    "assistant_answer_duration_seconds", "From the question to the stored answer.", ["model"], buckets=_SECONDS
)
TOKENS_PER_SECOND = Histogram(
    "assistant_answer_tokens_per_second",
    "Streamed answer pieces (one token each from vLLM and llama.cpp) per second after the first.",
    ["model"],
    buckets=_TOKENS_PER_SECOND,
)
ANSWER_TOKENS = Counter("assistant_answer_tokens", "Streamed answer pieces.", ["model"])
QUESTIONS = Counter(
    "assistant_questions", "Questions answered, by outcome: answered, nothing_found, error.", ["outcome"]
)

RETRIEVAL_STAGE_SECONDS = Histogram(
    "assistant_retrieval_stage_seconds",
    "Time spent in one retrieval stage: embed, vector, lexical, load (passages from the database), rerank.",
    ["stage"],
    buckets=_STAGE_SECONDS,
)

TASK_SECONDS = Histogram(
    "assistant_task_duration_seconds",
    "Celery task run time by task and outcome.",
    ["task", "state"],
    buckets=_TASK_SECONDS,
)
TASK_FAILURES = Counter(
    "assistant_task_failures", "Celery tasks that raised, by exception type.", ["task", "exception"]
)

UNKNOWN_MODEL = "unknown"


def observe_request(*, route: str, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(route=route, method=method).observe(seconds)
    RESPONSES.labels(route=route, method=method, status=str(status)).inc()


def observe_answer(
    *, model: str, first_token_s: float | None, total_s: float, tokens: int, error: bool, nothing_found: bool = False
) -> None:
    """One answered question (``assistant.chat.services.answer_stream`` calls it at the end).

    ``first_token_s``: seconds from the question to the model's first answer token
    (None when the model sent none); ``tokens``: streamed answer pieces.
    """
    model = model or UNKNOWN_MODEL
    outcome = "error" if error else "nothing_found" if nothing_found else "answered"
    QUESTIONS.labels(outcome=outcome).inc()
    if nothing_found:
        return
    ANSWER_SECONDS.labels(model=model).observe(total_s)
    if first_token_s is None:
        return
    FIRST_TOKEN_SECONDS.labels(model=model).observe(first_token_s)
    ANSWER_TOKENS.labels(model=model).inc(tokens)
    generating = total_s - first_token_s
    if tokens > 1 and generating > 0:
        TOKENS_PER_SECOND.labels(model=model).observe((tokens - 1) / generating)


# The totals of the innermost ``stages_timed`` block around this code, if any.
_stage_totals: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("stage_totals", default=None)


@contextmanager
def stage_timer(stage: str) -> Iterator[None]:
    """Time a retrieval stage (``with stage_timer("embed"): ...``), also when it raises."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - started
        RETRIEVAL_STAGE_SECONDS.labels(stage=stage).observe(seconds)
        totals = _stage_totals.get()
        if totals is not None:
            totals[stage] = totals.get(stage, 0.0) + seconds


@contextmanager
def stages_timed() -> Iterator[dict[str, float]]:
    """Seconds per retrieval stage spent inside this block, for one question's summary.

    A stage that runs more than once (a follow-up searched as asked and as rewritten)
    is summed. The histograms are observed as always.
    """
    totals: dict[str, float] = {}
    token = _stage_totals.set(totals)
    try:
        yield totals
    finally:
        _stage_totals.reset(token)


def observe_task(*, task: str, seconds: float, state: str) -> None:
    """One finished Celery task run; ``state``: success, failure, retry (Celery's, lower case)."""
    TASK_SECONDS.labels(task=task, state=state).observe(seconds)


def observe_task_failure(*, task: str, exception: str) -> None:
    TASK_FAILURES.labels(task=task, exception=exception).inc()
