"""Liveness of the background processes: heartbeat files that workers and beat write.

A worker writes ``HEALTH_DIR/<nodename>.json`` every ``HEALTH_HEARTBEAT_S`` from a
consumer boot step: the timer that drives it belongs to the worker's consumer, which
runs only while the worker is connected to the broker and consuming, so a worker that
lost its broker (or hangs in its main loop) stops beating. Busy pool processes do not
matter: tasks run in child processes, the main process keeps beating. Each file names
the queues the worker consumes, so the check also catches a worker started on the
wrong queue. Beat writes ``beat@<host>.json`` on every tick of its scheduler loop.

``manage.py healthcheck`` (compose's health checks, ``manage.py stack``) reads them:
a file older than ``HEALTH_STALE_AFTER_S``, or naming a process that is gone, is dead.
This is more telling than ``celery inspect ping``, which needs a broker round trip per
check, and answers from a worker whose consumer is stuck reconnecting.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import beat, bootsteps
from django.conf import settings


def expand_node(name: str) -> str:
    """Celery's ``%h`` (this host's name) in a node name, as ``celery worker -n`` expands it."""
    return name.replace("%h", socket.gethostname())


def beat_node() -> str:
    return f"beat@{socket.gethostname()}"


def heartbeat_path(node: str) -> Path:
    return Path(settings.HEALTH_DIR) / f"{node}.json"


def heartbeat_write(node: str, *, queues: list[str]) -> None:
    """Record that ``node`` is alive now (written whole: a reader never sees half a file)."""
    path = heartbeat_path(node)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_text(json.dumps({"node": node, "pid": os.getpid(), "queues": queues, "at": time.time()}))
    os.replace(partial, path)


def heartbeat_clear(node: str) -> None:
    heartbeat_path(node).unlink(missing_ok=True)


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def heartbeat_check(node: str, *, queues: list[str] | tuple[str, ...] = ()) -> Health:
    """Is ``node`` alive (a fresh heartbeat of a live process), consuming at least ``queues``?"""
    path = heartbeat_path(node)
    try:
        beat_record: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return Health(False, f"{node}: no heartbeat at {path} (not started, or not connected to the broker)")
    except (OSError, ValueError) as exc:
        return Health(False, f"{node}: unreadable heartbeat {path}: {exc}")
    age = time.time() - float(beat_record.get("at", 0))
    if age > settings.HEALTH_STALE_AFTER_S:
        return Health(False, f"{node}: last heartbeat {age:.0f} s ago (limit {settings.HEALTH_STALE_AFTER_S:g} s)")
    pid = int(beat_record.get("pid", 0))
    if node.endswith("@" + socket.gethostname()) and pid and not _pid_alive(pid):
        return Health(False, f"{node}: process {pid} is gone")
    missing = sorted(set(queues) - set(beat_record.get("queues", [])))
    if missing:
        return Health(False, f"{node}: does not consume {', '.join(missing)} (consumes {beat_record.get('queues')})")
    return Health(True, f"{node}: alive, heartbeat {age:.0f} s ago, queues {', '.join(beat_record.get('queues', []))}")


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A consumer boot step: beats while the consumer consumes (``assistant/celery.py`` adds it)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        self._beat(parent)
        self.tref = parent.timer.call_repeatedly(settings.HEALTH_HEARTBEAT_S, self._beat, (parent,), priority=10)

    def _beat(self, parent: Any) -> None:
        queues = sorted(q.name for q in parent.task_consumer.queues) if parent.task_consumer else []
        heartbeat_write(parent.hostname, queues=queues)

    def stop(self, parent: Any) -> None:
        # The connection is lost (or the worker stops): stop beating, the file goes stale.
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
        heartbeat_clear(parent.hostname)


class HeartbeatScheduler(beat.Scheduler):
    """Celery's in-memory scheduler, beating on every tick of beat's loop."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        delay = super().tick(*args, **kwargs)
        heartbeat_write(beat_node(), queues=[])
        return min(float(delay), settings.HEALTH_HEARTBEAT_S)

    def close(self) -> None:
        super().close()
        heartbeat_clear(beat_node())
