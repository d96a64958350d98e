"""``manage.py stack`` (``make stack``): the production topology, started, used and stopped.

Web under uvicorn with two workers, one Celery worker per queue and beat, against a
PostgreSQL database and a Redis database of their own, sharing the session's llama.cpp
server (LLM_BASE_URL). The stack's own health checks must all pass, a file ingested
through ``manage.py ingest`` must become ready, and Ctrl-C must stop every process.
PostgreSQL and Redis only: on the embedded run (SQLite) it is skipped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from assistant.management.commands.healthcheck import web_check
from assistant.ops import health
from tests.conftest import REPO, LLMServer
from tests.integration.conftest import _drop_postgres_database, _postgres_database
from tests.support.processes import Process, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.live

KINDS = ("ingest", "index", "connectors", "default")


@dataclass
class RunningStack:
    process: Process
    env: dict[str, str]
    port: int
    health_dir: Path

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", *args]
        return subprocess.run(command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def running(llama_server: LLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if not (database_url.startswith("postgres") and broker_url.startswith("redis")):
        pytest.skip("make stack runs on PostgreSQL and Redis: only in the services run")
    import redis

    root = tmp_path_factory.mktemp("prod-stack")
    env = dict(os.environ)
    env["DATABASE_URL"], admin_url = _postgres_database(database_url)
    env.update(
        # The run's own Redis database: nothing else consumes it while this module runs.
        CELERY_BROKER_URL=broker_url,
        ASSISTANT_DATA_DIR=str(root / "data"),
        LLM_BASE_URL=llama_server.base_url,
        LLM_MODEL=llama_server.model,
        HEALTH_HEARTBEAT_S="1",
        HEALTH_STALE_AFTER_S="10",
    )
    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    port = free_port()
    command = [sys.executable, "manage.py", "stack", "--port", str(port), "--web-workers", "2"]
    process = Process("stack", command, env=env, log_dir=root, cwd=REPO)
    try:
        process.wait_log("every health check passes", timeout=420)
        yield RunningStack(process, env, port, root / "data" / "health")
    finally:
        process.stop()
        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
        _drop_postgres_database(admin_url, urlparse(env["DATABASE_URL"]).path.lstrip("/"))


def test_every_part_passes_its_health_check(running: RunningStack, settings: Any) -> None:
    settings.HEALTH_DIR = running.health_dir
    settings.HEALTH_STALE_AFTER_S = 10.0
    for kind in KINDS:
        result = health.heartbeat_check(health.expand_node(f"{kind}@%h"), queues=[settings.TASK_QUEUES[kind]])
        assert result.ok, result.detail
    assert health.heartbeat_check(health.beat_node()).ok
    ready = web_check(f"http://127.0.0.1:{running.port}/readyz")
    assert ready.ok, ready.detail
    # The same check compose runs, as a command.
    command = running.manage("healthcheck", "worker", "--node", "ingest@%h", "--queue", "ingest")
    assert command.returncode == 0, command.stderr
    # uvicorn's supervisor of several worker processes.
    assert "Started parent process" in running.process.log_tail(1_000_000)


def test_an_ingested_file_becomes_ready(running: RunningStack, tmp_path: Path) -> None:
    note = tmp_path / "deploy-note.txt"
    note.write_text("The stack test note: the night shift starts at ten.\n")
    result = running.manage("ingest", str(note), "--collection", "stack", "--wait", "--json")
    assert result.returncode == 0, result.stderr + running.process.log_tail()
    (document,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert document["status"] == "ready", document


def test_ctrl_c_stops_every_process(running: RunningStack, settings: Any) -> None:
    settings.HEALTH_DIR = running.health_dir
    pids = [json.loads(health.heartbeat_path(health.expand_node(f"{kind}@%h")).read_text())["pid"] for kind in KINDS]
    pids.append(json.loads(health.heartbeat_path(health.beat_node()).read_text())["pid"])
    os.kill(running.process.proc.pid, signal.SIGINT)
    assert running.process.proc.wait(timeout=120) == 0, running.process.log_tail()
    wait_until(lambda: "stopped." in running.process.log_tail(), 10, running.process.log_tail)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    assert all(gone(pid) for pid in pids)
    # A clean stop removes the heartbeats: nothing passes for alive afterwards.
    assert not any(running.health_dir.glob("*.json"))
    assert not web_check(f"http://127.0.0.1:{running.port}/readyz", timeout=2).ok
