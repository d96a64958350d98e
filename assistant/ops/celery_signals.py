"""Celery's side of observability: ids carried in task headers, task metrics, the worker's log format.

Connected by ``assistant/celery.py``, so the web process (which sends tasks) and the
workers (which run them) both have them.

* An ingest task's message carries an ``ingest_id`` header: the sender's own when
  one is set (a task enqueuing follow-up work), else a new one. Every log line of the
  task's run carries it, beside the document ids in the task's arguments; the
  ``request_id`` of the upload that sent it travels along too.
* Each run is timed (``assistant_task_duration_seconds``), each failure counted
  (``assistant_task_failures``).
* ``METRICS_PORT``: each worker process serves its metrics on that port (the next
  free one for a second child process) at ``METRICS_ADDR``.
* ``LOG_FORMAT=json``: the worker logs through the project's ``LOGGING`` instead of
  Celery's own format.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery.signals import (
    before_task_publish,
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    worker_process_init,
)

from assistant.ops import context, metrics

logger = logging.getLogger(__name__)

# Per task id: when it started and the context tokens to undo after it.
_running: dict[str, tuple[float, list[Any]]] = {}


def _is_ingest(name: str) -> bool:
    return name.startswith("ingest.")


@before_task_publish.connect
def _add_ids(sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    if headers is None:
        return
    request_id = context.current_request_id()
    if request_id and "request_id" not in headers:
        headers["request_id"] = request_id
    if sender and _is_ingest(sender) and "ingest_id" not in headers:
        headers["ingest_id"] = context.current_ingest_id() or context.new_id()
        args = body[0] if isinstance(body, list | tuple) and body else []
        logger.info(
            "enqueued %s",
            sender,
            extra={"task": sender, "task_args": list(args), "ingest_id": headers["ingest_id"]},
        )


def _header(request: Any, name: str) -> str | None:
    # A worker puts a message's own headers on the request; ``apply()`` keeps them in ``headers``.
    value = getattr(request, name, None) or (getattr(request, "headers", None) or {}).get(name)
    return str(value) if value else None


@task_prerun.connect
def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    request = task.request
    tokens: list[Any] = []
    ingest_id = context.sane_id(_header(request, "ingest_id"))
    if ingest_id is None and _is_ingest(task.name):
        ingest_id = context.new_id()  # run eagerly, or sent by an older process
    if ingest_id is not None:
        tokens.append((context.ingest_id, context.ingest_id.set(ingest_id)))
    request_id = context.sane_id(_header(request, "request_id"))
    if request_id is not None:
        tokens.append((context.request_id, context.request_id.set(request_id)))
    _running[task_id] = (time.monotonic(), tokens)


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started, tokens = _running.pop(task_id or "", (None, []))
    if started is not None and task is not None:
        metrics.observe_task(task=task.name, seconds=time.monotonic() - started, state=(state or "unknown").lower())
    for var, token in reversed(tokens):
        # Set in another context (a thread pool): nothing to undo here.
        with contextlib.suppress(ValueError):
            var.reset(token)


@task_failure.connect
def _task_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    name = getattr(sender, "name", None) or "unknown"
    metrics.observe_task_failure(task=name, exception=type(exception).__name__ if exception else "unknown")


@worker_process_init.connect
def _serve_metrics(**_: Any) -> None:
    from django.conf import settings

    if not settings.METRICS_PORT:
        return
    from prometheus_client import start_http_server

    # Each prefork child serves its own values: the first takes METRICS_PORT, the
    # next the port after it, and so on (docs/observability.md).
    for port in range(settings.METRICS_PORT, settings.METRICS_PORT + 64):
        try:
            start_http_server(port, addr=settings.METRICS_ADDR)
        except OSError:
            continue
        logger.info("metrics served at http://%s:%d/metrics", settings.METRICS_ADDR, port)
        return
    logger.warning("metrics: no free port from %d", settings.METRICS_PORT)


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Connected, Celery leaves the root logger alone: the project's ``LOGGING`` applies as set."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
