"""Liveness of workers and beat: heartbeat files and ``manage.py healthcheck``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from assistant import celery_app, processes
from assistant.ops import health
from tests.support.processes import Process
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def health_dir(settings, tmp_path: Path) -> Path:
    settings.HEALTH_DIR = tmp_path / "health"
    settings.HEALTH_STALE_AFTER_S = 60.0
    return settings.HEALTH_DIR


def node() -> str:
    return health.expand_node("ingest@%h")


def test_a_fresh_heartbeat_of_a_live_process_is_healthy(health_dir: Path, settings) -> None:
    health.heartbeat_write(node(), queues=[settings.QUEUE_INGEST])
    result = health.heartbeat_check(node(), queues=[settings.QUEUE_INGEST])
    assert result.ok, result.detail
    assert socket.gethostname() in result.detail


def test_no_heartbeat_is_unhealthy(health_dir: Path) -> None:
    result = health.heartbeat_check(node())
    assert not result.ok and "no heartbeat" in result.detail


def test_a_stale_heartbeat_is_unhealthy(health_dir: Path) -> None:
    health.heartbeat_write(node(), queues=[])
    record = json.loads(health.heartbeat_path(node()).read_text())
    record["at"] -= 61
    health.heartbeat_path(node()).write_text(json.dumps(record))
    result = health.heartbeat_check(node())
    assert not result.ok and "61 s ago" in result.detail


def test_a_heartbeat_of_a_dead_process_is_unhealthy(health_dir: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    health.heartbeat_write(node(), queues=[])
    record = json.loads(health.heartbeat_path(node()).read_text())
    record["pid"] = int(child.stdout)
    health.heartbeat_path(node()).write_text(json.dumps(record))
    result = health.heartbeat_check(node())
    assert not result.ok and "is gone" in result.detail


def test_a_worker_on_the_wrong_queue_is_unhealthy(health_dir: Path, settings) -> None:
    health.heartbeat_write(node(), queues=[settings.QUEUE_INDEX])
    result = health.heartbeat_check(node(), queues=[settings.QUEUE_INGEST])
    assert not result.ok and f"does not consume {settings.QUEUE_INGEST}" in result.detail


def test_the_command_resolves_a_queue_kind_to_its_configured_name(health_dir: Path, settings, capsys) -> None:
    settings.TASK_QUEUES = {**settings.TASK_QUEUES, "ingest": "parse"}
    health.heartbeat_write(node(), queues=["parse"])
    call_command("healthcheck", "worker", "--node", "ingest@%h", "--queue", "ingest")
    assert "alive" in capsys.readouterr().out
    with pytest.raises(CommandError, match="does not consume index"):
        call_command("healthcheck", "worker", "--node", "ingest@%h", "--queue", "index")


def test_the_command_fails_for_a_missing_beat_and_an_unreachable_web(health_dir: Path) -> None:
    with pytest.raises(CommandError, match="no heartbeat"):
        call_command("healthcheck", "beat")
    with pytest.raises(CommandError, match="did not answer"):
        call_command("healthcheck", "web", "--url", "http://127.0.0.1:9/readyz")


def test_beat_beats_on_every_tick_and_ticks_at_least_as_often(health_dir: Path, settings) -> None:
    settings.HEALTH_HEARTBEAT_S = 7.0
    scheduler = health.HeartbeatScheduler(app=celery_app, schedule={}, lazy=True)
    delay = scheduler.tick()
    assert delay <= 7.0
    assert health.heartbeat_check(health.beat_node()).ok
    scheduler.close()
    assert not health.heartbeat_path(health.beat_node()).exists()


@pytest.mark.live
@pytest.mark.embedded
def test_a_real_worker_is_healthy_while_it_consumes_and_not_after(settings, tmp_path: Path) -> None:
    health_dir = tmp_path / "health"
    settings.HEALTH_DIR = health_dir
    env = {**os.environ, "ASSISTANT_HEALTH_DIR": str(health_dir), "HEALTH_HEARTBEAT_S": "1"}
    command = processes.worker_command(queues=[settings.QUEUE_INDEX], node="index@%h", beat=False)
    worker = Process("worker-index", command, env=env, log_dir=tmp_path, cwd=REPO)
    check = [sys.executable, "manage.py", "healthcheck", "worker", "--node", "index@%h", "--queue", "index"]
    try:
        worker.wait_log(" ready.", timeout=120)
        wait_until(lambda: health.heartbeat_check(health.expand_node("index@%h")).ok, 30, worker.log_tail)
        first = json.loads(health.heartbeat_path(health.expand_node("index@%h")).read_text())["at"]
        result = subprocess.run(check, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"queues {settings.QUEUE_INDEX}" in result.stdout
        # It keeps beating (every HEALTH_HEARTBEAT_S), not just once at start.
        wait_until(
            lambda: json.loads(health.heartbeat_path(health.expand_node("index@%h")).read_text())["at"] > first + 0.5,
            30,
            worker.log_tail,
        )
    finally:
        worker.stop()
    result = subprocess.run(check, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "no heartbeat" in result.stderr
