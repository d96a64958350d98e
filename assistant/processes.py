"""The command lines of the product's processes, shared by ``serve`` and the tests."""

from __future__ import annotations

import sys


def worker_command(*, concurrency: int = 1, beat: bool = True) -> list[str]:
    """A Celery worker; with ``beat`` it also runs the periodic sweep (one per site)."""
    command = [
        sys.executable, "-m", "celery", "-A", "assistant", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    if beat:
        command += ["--beat"]
    return command


def web_command(*, host: str, port: int) -> list[str]:
    # --no-proxy-headers: uvicorn would otherwise take X-Forwarded-For from any client
    # on 127.0.0.1 as the address; the application alone decides whom to believe
    # (DJANGO_PROXY_COUNT, see assistant.audit.services.client_ip).
    return [
        sys.executable, "-m", "uvicorn", "assistant.asgi:application", "--host", host, "--port", str(port),
        "--no-access-log", "--no-proxy-headers",
    ]  # fmt: skip
