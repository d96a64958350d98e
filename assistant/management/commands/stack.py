"""``manage.py stack``: the production topology of compose.yaml, as processes on this machine.

Web under uvicorn with several workers, one Celery worker per queue
(``settings.TASK_QUEUES``), beat on its own and, unless ``LLM_BASE_URL`` names a
running server, the packaged llama.cpp server; against whatever database and broker
the settings name (``make stack`` points them at the machine's PostgreSQL and Redis).
The same health checks as compose's (``manage.py healthcheck``) decide when it is up,
and are repeated while it runs. Any part exiting, or Ctrl-C, stops everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from assistant import local_llm, processes
from assistant.management.commands.healthcheck import web_check
from assistant.ops import health


@dataclass
class _Part:
    name: str
    command: list[str]
    check: Callable[[], health.Health]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    healthy: bool = False


def _worker_check(node: str, queue: str) -> Callable[[], health.Health]:
    return lambda: health.heartbeat_check(health.expand_node(node), queues=[queue])


class Command(BaseCommand):
    help = "Start web (several workers), one Celery worker per queue, beat and the LLM server, with health checks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2, help="uvicorn worker processes (default 2).")
        parser.add_argument("--concurrency", type=int, default=1, help="Celery pool processes per queue's worker.")
        parser.add_argument("--start-timeout", type=float, default=300.0, help="Seconds for every check to pass.")
        parser.add_argument("--no-migrate", action="store_true", help="Skip migrate and collectstatic.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
        parts = self._parts(options)
        for part in parts:
            if part.name.startswith(("worker-", "beat")):
                # A heartbeat a killed earlier run left behind must not pass for this run's.
                health.heartbeat_clear(self._node(part.name))

        def on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        metrics_dir = tempfile.mkdtemp(prefix="prometheus-", dir=settings.DATA_DIR)
        try:
            for part in parts:
                env = {**os.environ, **part.env}
                if part.name == "web" and not settings.PROMETHEUS_MULTIPROC_DIR:
                    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # /metrics sums every web process
                self.stdout.write(f"starting {part.name}: {' '.join(part.command[1:10])}")
                part.proc = subprocess.Popen(part.command, env=env, start_new_session=True)  # noqa: S603
            self._wait_healthy(parts, options["start_timeout"])
            url = f"http://{options['host']}:{options['port']}/"
            self.stdout.write(self.style.SUCCESS(f"The stack is running at {url}: every health check passes."))
            self.stdout.write(f"LLM: {settings.LLM_MODEL} at {settings.LLM_BASE_URL}. Press Ctrl-C to stop.")
            self._watch(parts)
        except KeyboardInterrupt:
            self.stdout.write("stopping ...")
        finally:
            self._stop(parts)
            shutil.rmtree(metrics_dir, ignore_errors=True)
            self.stdout.write("stopped.")

    @staticmethod
    def _node(name: str) -> str:
        return health.beat_node() if name == "beat" else health.expand_node(f"{name.removeprefix('worker-')}@%h")

    def _parts(self, options: dict[str, Any]) -> list[_Part]:
        parts: list[_Part] = []
        if settings.LLM_EMBEDDED:
            port = settings.LLM_LOCAL_PORT
            command = local_llm.server_command(port=port, threads=os.cpu_count() or 2)
            parts.append(_Part("llm", command, lambda: web_check(f"{settings.LLM_BASE_URL}/models")))
        for kind, queue in settings.TASK_QUEUES.items():
            node = f"{kind}@%h"
            command = processes.worker_command(
                concurrency=options["concurrency"], beat=False, queues=[queue], node=node
            )
            parts.append(_Part(f"worker-{kind}", command, _worker_check(node, queue)))
        parts.append(_Part("beat", processes.beat_command(), lambda: health.heartbeat_check(health.beat_node())))
        host, port = options["host"], options["port"]
        web = processes.web_command(host=host, port=port, workers=options["web_workers"])
        parts.append(_Part("web", web, lambda: web_check(f"http://{host}:{port}/readyz")))
        return parts

    def _exited(self, parts: list[_Part]) -> None:
        for part in parts:
            if part.proc is not None and part.proc.poll() is not None:
                raise CommandError(f"{part.name} exited with status {part.proc.returncode}; stopping the stack.")

    def _wait_healthy(self, parts: list[_Part], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._exited(parts)
            for part in parts:
                if not part.healthy:
                    result = part.check()
                    if result.ok:
                        part.healthy = True
                        self.stdout.write(f"healthy: {result.detail}")
            if all(part.healthy for part in parts):
                return
            if time.monotonic() > deadline:
                failing = [part.check().detail for part in parts if not part.healthy]
                raise CommandError(f"Not healthy after {timeout:g} s: " + "; ".join(failing))
            time.sleep(0.5)

    def _watch(self, parts: list[_Part]) -> None:
        """Keep checking; say when a part turns unhealthy or recovers. A part that exits stops the stack."""
        next_check = time.monotonic() + settings.HEALTH_HEARTBEAT_S
        while True:
            self._exited(parts)
            if time.monotonic() >= next_check:
                for part in parts:
                    result = part.check()
                    if result.ok != part.healthy:
                        part.healthy = result.ok
                        self.stdout.write(("healthy again: " if result.ok else "UNHEALTHY: ") + result.detail)
                next_check = time.monotonic() + settings.HEALTH_HEARTBEAT_S
            time.sleep(0.5)

    def _stop(self, parts: list[_Part]) -> None:
        """Web first (no new work), then beat and the workers (warm shutdown: tasks finish), the LLM last."""
        running = [p for p in reversed(parts) if p.proc is not None and p.proc.poll() is None]
        for part in running:
            self._signal(part, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for part in running:
            if part.proc is None:
                continue
            try:
                part.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stdout.write(f"{part.name} did not stop within 30 s: killed")
            # Whatever the part left behind in its group (pool children) goes with it.
            self._signal(part, signal.SIGKILL)
            part.proc.wait()

    @staticmethod
    def _signal(part: _Part, signum: int) -> None:
        if part.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(part.proc.pid, signum)
