"""A folder connector's sync survives a killed worker: a real worker is killed while it
reads a file mid-sync, and the sync resumes in a new worker (the beat finds it
stalled) with every file in exactly once. Runs against Redis and PostgreSQL on the
services run, and the file-system broker and SQLite on the embedded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.support.blocking import BLOCK_CONNECTOR_GATE_ENV, BLOCK_CONNECTOR_ITEM, blocking_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.live

# Short enough for a test to watch the sweep take a killed worker's sync up again.
FAST = {"CONNECTOR_HEARTBEAT_S": "0.2", "CONNECTOR_STALL_AFTER_S": "4", "CONNECTOR_TICK_S": "1"}


def listed(stack: Stack, name: str) -> dict:
    result = stack.manage("connector", "list", "--json")
    assert result.returncode == 0, result.stderr
    return next(row for row in map(json.loads, result.stdout.splitlines()) if row["name"] == name)


def test_a_worker_killed_mid_sync_resumes_without_duplicates_or_losses(stack: Stack, tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    names = ["a-first.md", "b-second.md", f"c-{BLOCK_CONNECTOR_ITEM}.md", "d-fourth.md", "e-fifth.md"]
    for name in names:
        (share / name).write_text(f"# {name}\n\nThe text of {name} for the resilience test.\n")
    gate = tmp_path / "gate"
    gate.touch()
    stack.start_worker(**FAST, **blocking_env(stack.env), **{BLOCK_CONNECTOR_GATE_ENV: str(gate)})
    session = stack.client()
    assert session.login("admin", ADMIN_PASSWORD).status_code == 302
    created = session.post("/portal/", {"name": "Killed sync"})
    collection_id = int(created.headers["location"].rstrip("/").rsplit("/", 1)[-1])
    add = stack.manage("connector", "add", "--collection", "Killed sync", "--type", "folder", "--name", "killed",
                       "--path", str(share), "--map", "**=*")  # fmt: skip
    assert add.returncode == 0, add.stderr
    assert stack.manage("connector", "sync", "killed").returncode == 0

    # The worker has stored the two files before the blocking one, and is stuck reading it.
    wait_until(
        lambda: listed(stack, "killed")["items"] == 2 and listed(stack, "killed")["state"] == "running",
        120, lambda: f"{listed(stack, 'killed')}\n{stack.logs()}", interval=0.3,
    )  # fmt: skip
    worker = stack.processes["worker"]
    worker.kill()
    worker.proc.wait(timeout=30)
    assert listed(stack, "killed")["state"] == "running"  # orphaned: nobody is working on it

    gate.unlink()
    # The new worker's beat finds the sync stalled and sends it again; it resumes.
    stack.start_worker(**FAST)
    final = wait_until(
        lambda: (row := listed(stack, "killed"))["state"] == "idle" and row["items"] == 5 and row,
        180, lambda: f"{listed(stack, 'killed')}\n{stack.logs()}", interval=0.5,
    )  # fmt: skip
    assert final["last_error"] == "" and final["failed"] == 0

    # Every file once, every one ingested.
    def ready() -> list[dict] | None:
        rows = session.http.get(f"/portal/collections/{collection_id}/documents.json").json()["documents"]
        return rows if len(rows) == 5 and all(r["status"] == "ready" for r in rows) else None

    rows = wait_until(ready, 240, lambda: f"{stack.logs()}", interval=0.5)
    assert sorted(r["name"] for r in rows) == names
