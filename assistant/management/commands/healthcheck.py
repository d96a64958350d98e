"""``manage.py healthcheck web|worker|beat``: the health checks of compose.yaml and ``manage.py stack``.

Exit status 0 when healthy, 1 with the reason on stderr otherwise.

* ``web [--url URL]``: ``/readyz`` answers 200 (database, broker, LLM, indexes).
* ``worker --node NAME [--queue Q ...]``: the worker's heartbeat is fresh, its process
  alive and it consumes the queues named (``assistant/ops/health.py``).
* ``beat``: beat's scheduler loop is ticking on this host.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from assistant.ops import health


def web_check(url: str, *, timeout: float = 10.0) -> health.Health:
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        return health.Health(False, f"web: {url} did not answer: {exc}")
    if response.status_code != 200:
        return health.Health(False, f"web: {url} answered {response.status_code}: {response.text[:300]}")
    return health.Health(True, f"web: {url} ready")


class Command(BaseCommand):
    help = "Check one process of the stack: web (its /readyz), a worker or beat (their heartbeats)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("part", choices=["web", "worker", "beat"])
        parser.add_argument("--url", default="http://127.0.0.1:8000/readyz", help="web: the /readyz URL.")
        parser.add_argument("--node", default="celery@%h", help="worker: its node name (celery -n), %%h = host.")
        parser.add_argument(
            "--queue",
            action="append",
            default=[],
            help="worker: a queue it must consume: a name, or a kind (" + ", ".join(settings.TASK_QUEUES) + ").",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        part = options["part"]
        if part == "web":
            result = web_check(options["url"])
        elif part == "beat":
            result = health.heartbeat_check(health.beat_node())
        else:
            queues = [settings.TASK_QUEUES.get(q, q) for q in options["queue"]]
            result = health.heartbeat_check(health.expand_node(options["node"]), queues=queues)
        if not result.ok:
            raise CommandError(result.detail)
        self.stdout.write(result.detail)
