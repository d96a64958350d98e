"""The command lines of the product's processes, shared by ``serve``, ``stack`` and the tests."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def worker_command(*, concurrency: int = 1, beat: bool = True, queues: Sequence[str] = (), node: str = "") -> list[str]:
    """A Celery worker; with ``beat`` it also runs the periodic sweep (one per site).

    Without ``queues`` it consumes every queue of ``settings.TASK_QUEUES`` (the
    embedded default); ``node`` names it (``ingest@%h``) when several run on one host.
    """
    command = [
        sys.executable, "-m", "celery", "-A", "assistant", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if queues:
        command += ["--queues", ",".join(queues)]
    if node:
        command += ["--hostname", node]
    if beat:
        command += ["--beat"]
    return command


def beat_command() -> list[str]:
    """Celery beat on its own: the periodic sweep and purge (exactly one per site)."""
    return [sys.executable, "-m", "celery", "-A", "assistant", "beat", "--loglevel", "INFO"]


def web_command(*, host: str, port: int, workers: int = 1) -> list[str]:
    # --no-proxy-headers: uvicorn would otherwise take X-Forwarded-For from any client
    # on 127.0.0.1 as the address; the application alone decides whom to believe
    # (DJANGO_PROXY_COUNT, see assistant.audit.services.client_ip).
    command = [
        sys.executable, "-m", "uvicorn", "assistant.asgi:application", "--host", host, "--port", str(port),
        "--no-access-log", "--no-proxy-headers",
    ]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    return command
