"""Run the whole product in the foreground: web server, Celery worker and, unless an
external LLM server is configured, the embedded llama.cpp server.

Stops everything when any part exits or on Ctrl-C, so a broken part is never hidden
behind a seemingly running product.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from types import FrameType
from typing import Any

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from assistant import local_llm, processes


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and (by default) the local LLM server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("ASSISTANT_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ASSISTANT_PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="Do not start a Celery worker.")
        parser.add_argument("--no-llm", action="store_true", help="Do not start the embedded LLM server.")

    def handle(self, *args: Any, **options: Any) -> None:
        children: list[tuple[str, subprocess.Popen[bytes]]] = []

        def start(name: str, command: list[str]) -> None:
            self.stdout.write(f"starting {name}: {' '.join(command[:6])} ...")
            children.append((name, subprocess.Popen(command, start_new_session=True)))  # noqa: S603

        def stop(*_: Any) -> None:
            for _name, child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 15
            for _name, child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        # Pages reference hashed static file names: collect them before serving.
        call_command("collectstatic", interactive=False, verbosity=0)
        try:
            if settings.LLM_EMBEDDED and not options["no_llm"]:
                start("llm", local_llm.server_command(port=settings.LLM_LOCAL_PORT, threads=os.cpu_count() or 2))
            if not options["no_worker"]:
                start("worker", processes.worker_command())
            start("web", processes.web_command(host=options["host"], port=options["port"]))
            self._wait_ready(options["host"], options["port"], children)
            self.stdout.write(
                self.style.SUCCESS(f"\nThe assistant is running at http://{options['host']}:{options['port']}/")
            )
            self.stdout.write(f"LLM: {settings.LLM_MODEL} at {settings.LLM_BASE_URL}. Press Ctrl-C to stop.\n")
            while True:
                for name, child in children:
                    if child.poll() is not None:
                        raise CommandError(f"The {name} process exited with status {child.returncode}; stopping.")
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("stopping ...")
        finally:
            stop()

    def _wait_ready(self, host: str, port: int, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        checks = {"web": f"http://{host}:{port}/healthz"}
        if settings.LLM_EMBEDDED and any(name == "llm" for name, _ in children):
            checks["llm"] = f"{settings.LLM_BASE_URL}/models"
        deadline = time.monotonic() + 180
        while checks and time.monotonic() < deadline:
            for name, child in children:
                if child.poll() is not None:
                    raise CommandError(f"The {name} process exited with status {child.returncode} while starting.")
            for name, url in list(checks.items()):
                try:
                    if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                        del checks[name]
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        if checks:
            raise CommandError(f"Not ready after 180 s: {', '.join(checks)}")
