"""Connectors synced by real workers.

A folder connector's sync survives a killed worker: a real worker is killed while it
reads a file mid-sync, and the sync resumes in a new worker (the beat finds it
stalled) with every file in exactly once. A WebDAV connector (a real WebDAV server)
is synced by the worker, and after an edit at the source and a sync, a question
asked through the product's answer path is answered from the new text: its
citations carry the new passage. Runs against Redis and PostgreSQL on the services
run, and the file-system broker and SQLite on the embedded run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.connectors.secrets import new_key
from tests.integration.conftest import ADMIN_PASSWORD, BrowserSession, Stack
from tests.support.blocking import BLOCK_CONNECTOR_GATE_ENV, BLOCK_CONNECTOR_ITEM, blocking_env
from tests.support.dav import PASSWORD, USER, DavServer
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


def _ready(session: BrowserSession, collection_id: int, expected: dict[str, int | None]) -> list[dict] | None:
    """The documents when each name in ``expected`` is there once and ready (and not the id given)."""
    rows = session.http.get(f"/portal/collections/{collection_id}/documents.json").json()["documents"]
    by_name = {r["name"]: r for r in rows}
    if len(rows) != len(expected) or set(by_name) != set(expected):
        return None
    if any(r["status"] != "ready" or r["id"] == expected[r["name"]] for r in rows):
        return None
    return rows


def _cited(stack: Stack, user: str, password: str, collection_id: int, question: str) -> list[dict]:
    """The citations the answer to ``question``, asked by ``user`` in a new conversation, came with."""
    session = stack.client()
    assert session.login(user, password).status_code == 302
    conversation = session.post("/chat/new", {"collection": collection_id})
    assert conversation.status_code == 302, conversation.text
    events = session.ask(conversation.headers["location"], question)
    assert events[0]["event"] == "sources" and events[-1]["event"] == "done", events[-1]
    return list(events[-1]["citations"])


def test_a_webdav_sync_by_a_worker_then_an_edit_is_what_the_next_answer_cites(stack: Stack, tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / "dav").mkdir()
    dav = DavServer(tmp_path / "dav")
    try:
        team = dav.root / "team"
        (team / "hr").mkdir(parents=True)
        parking = team / "parking.md"
        parking.write_text("# Parking\n\nParking permits are issued by reception on the ground floor.\n")
        (team / "hr" / "salaries.md").write_text("# Salaries\n\nThe salary bands run from A to F.\n")
        stack.start_worker(CONNECTOR_SECRET_KEY=key)
        session = stack.client()
        assert session.login("admin", ADMIN_PASSWORD).status_code == 302
        created = session.post("/portal/", {"name": "Dav live"})
        collection_id = int(created.headers["location"].rstrip("/").rsplit("/", 1)[-1])
        outsider_pw, member_pw = "outsider-" + key[:10], "member-" + key[10:20]
        for user, password, groups in (("outsider", outsider_pw, []), ("member", member_pw, ["--group", "hr"])):
            assert stack.manage("user", "add", user, "--password", password, *groups).returncode == 0
            assert stack.manage("collection", "grant", "Dav live", "--user", user, "--role", "read").returncode == 0
        add = stack.manage(
            "connector", "add", "--collection", "Dav live", "--type", "webdav", "--name", "dav-live",
            "--url", dav.url + "team/", "--username", USER, "--secret-env", "DAV_PASSWORD",
            "--map", "hr/**=hr", "--map", "**=*", CONNECTOR_SECRET_KEY=key, DAV_PASSWORD=PASSWORD,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        assert stack.manage("connector", "sync", "dav-live", CONNECTOR_SECRET_KEY=key).returncode == 0
        rows = wait_until(
            lambda: _ready(session, collection_id, {"parking.md": None, "salaries.md": None}),
            240, lambda: f"{listed(stack, 'dav-live')}\n{stack.logs()}", interval=0.5,
        )  # fmt: skip
        first = {r["name"]: r["id"] for r in rows}

        # An edit at the source, then a sync by the worker: a new version replaces the old one.
        parking.write_text("# Parking\n\nParking permits are now issued by the quokka desk in the basement.\n")
        assert stack.manage("connector", "sync", "dav-live", CONNECTOR_SECRET_KEY=key).returncode == 0
        wait_until(
            lambda: _ready(session, collection_id, {"parking.md": first["parking.md"], "salaries.md": None}),
            240, lambda: f"{listed(stack, 'dav-live')}\n{stack.logs()}", interval=0.5,
        )  # fmt: skip
        assert listed(stack, "dav-live")["last_error"] == ""

        # Asked right after: the answer's citations carry the new passage, never the old one,
        # and the hr file stays out of an outsider's answer while a member's cites it.
        cited = _cited(stack, "outsider", outsider_pw, collection_id, "Who issues parking permits?")
        texts = [c["text"] for c in cited if c["document"] == "parking.md"]
        assert texts and any("quokka desk" in t for t in texts), cited
        assert not any("ground floor" in c["text"] for c in cited)
        assert "salaries.md" not in {c["document"] for c in cited}
        member = _cited(stack, "member", member_pw, collection_id, "What are the salary bands?")
        assert "salaries.md" in {c["document"] for c in member}, member
    finally:
        dav.close()
