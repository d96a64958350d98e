"""The database and the broker restarted under a running product: nothing lost, nothing stuck.

Each test stops or restarts a private PostgreSQL or Redis (``conftest.fault_stack``)
at a point it synchronises on (a document seen mid-embedding, held there by the
blocking wrappers; an answer held mid-stream by the scripted LLM), then checks
that every document ends ``ready`` or ``failed`` with a reason, that no chunk is
stored twice, and that search finds the right passage.

A worker killed mid-document is proven by
``tests/integration/test_resilience.py::test_worker_killed_mid_document_is_rescued_with_one_set_of_chunks``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import SCRIPTED_ANSWER, ScriptedLLM
from tests.integration.conftest import ADMIN_PASSWORD, BrowserSession, Stack
from tests.integration.test_resilience import documents, finished, new_collection, upload, wait_for
from tests.support.blocking import PAUSE_EMBEDDING, blocking_env
from tests.support.private_servers import PrivatePostgres, PrivateRedis
from tests.support.waiting import wait_until

# Private PostgreSQL and Redis in either pass: `make test` runs this module once.
pytestmark = [pytest.mark.live, pytest.mark.once]


@pytest.fixture(scope="module")
def session(fault_stack: Stack) -> BrowserSession:
    session = fault_stack.client()
    assert session.login("admin", ADMIN_PASSWORD).status_code == 302
    return session


def note(number: int) -> bytes:
    return f"# Storeroom {number}\n\nThe key code of storeroom number {number} is {4100 + number}.\n".encode()


def duplicate_chunks(stack: Stack) -> list[tuple[Any, ...]]:
    """(document, ordinal, copies) of every passage stored more than once."""
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"].replace("postgres://", "postgresql://", 1)) as conn:
        return conn.execute(
            "SELECT document_id, ordinal, count(*) FROM ingest_chunk GROUP BY document_id, ordinal HAVING count(*) > 1"
        ).fetchall()


def retrieved(stack: Stack, collection: str, question: str) -> list[dict[str, Any]]:
    result = stack.manage("ask", "--collection", collection, "--retrieve-only", "--json", "-k", "3", question)
    assert result.returncode == 0, result.stderr[-2000:]
    return list(json.loads(result.stdout)["citations"])


def assert_recovered(stack: Stack, docs: dict[str, dict]) -> None:
    for name, doc in docs.items():
        assert doc["status"] == "ready", (name, doc)
        assert doc["chunks"] >= 1 and doc["progress_done"] == doc["chunks"], (name, doc)
    assert duplicate_chunks(stack) == []


def test_redis_restarted_during_a_batch_upload_loses_no_document(
    fault_stack: Stack, private_redis: PrivateRedis, session: BrowserSession, tmp_path: Path
) -> None:
    resume = tmp_path / "resume"
    fault_stack.start_worker(**blocking_env(fault_stack.env, resume_file=resume))
    collection_id = new_collection(session, "Redis restart")
    first = {f"first-{n}.md": note(n) for n in range(3)}
    first["first-0.md"] += f"\n{PAUSE_EMBEDDING}\n".encode()
    upload(session, collection_id, first)
    wait_for(session, collection_id, lambda d: d["first-0.md"]["status"] == "embedding", stack=fault_stack)

    # Redis goes away while the worker is in the middle of the first batch; without
    # persistence, every message it held (the batch's own, unacknowledged) goes with it.
    private_redis.stop()
    second = {f"second-{n}.md": note(n) for n in range(3, 6)}
    upload(session, collection_id, second)  # accepted (302), not an error page
    assert {documents(session, collection_id)[name]["status"] for name in second} == {"queued"}
    # Meanwhile readiness takes the instance out of service, naming the broker alone.
    down = session.http.get("/readyz")
    assert (down.status_code, down.json()["failing"]) == (503, ["broker"]), down.json()
    private_redis.start()
    ready = session.http.get("/readyz")  # Redis accepts connections again: ready at once
    assert (ready.status_code, ready.json()["failing"]) == (200, []), ready.json()
    resume.touch()

    docs = wait_for(session, collection_id, lambda d: len(d) == 6 and finished(d), stack=fault_stack)
    assert_recovered(fault_stack, docs)
    top = retrieved(fault_stack, "Redis restart", "key code of storeroom number 4")[0]
    assert top["document"] == "second-4.md" and "4104" in top["text"], top


def test_postgres_restarted_mid_ingest_finishes_the_document_once(
    fault_stack: Stack, private_postgres: PrivatePostgres, session: BrowserSession, tmp_path: Path
) -> None:
    resume = tmp_path / "resume"
    fault_stack.start_worker(**blocking_env(fault_stack.env, resume_file=resume))
    collection_id = new_collection(session, "Postgres restart ingest")
    upload(session, collection_id, {"restart.md": note(7) + f"\n{PAUSE_EMBEDDING}\n".encode()})
    wait_for(session, collection_id, lambda d: d["restart.md"]["status"] == "embedding", stack=fault_stack)

    # A crash and a restart: every connection the worker and the web hold is cut.
    private_postgres.restart(mode="immediate")
    resume.touch()

    docs = wait_for(session, collection_id, finished, stack=fault_stack)
    assert_recovered(fault_stack, docs)
    # Handed back on a new connection, with its attempt given back: the outage was not the file's fault.
    assert docs["restart.md"]["attempts"] == 1, docs
    top = retrieved(fault_stack, "Postgres restart ingest", "key code of storeroom number 7")[0]
    assert top["document"] == "restart.md" and "4107" in top["text"], top


def test_postgres_restarted_mid_answer_keeps_the_answer(
    fault_stack: Stack, private_postgres: PrivatePostgres, scripted_llm: ScriptedLLM, session: BrowserSession
) -> None:
    collection_id = new_collection(session, "Postgres restart answer")
    upload(session, collection_id, {"travel.md": b"# Travel\n\nThe daily meal allowance abroad is 85 euros.\n"})
    wait_for(session, collection_id, finished, stack=fault_stack)
    conversation = session.post("/chat/new", {"collection": collection_id})
    assert conversation.status_code == 302
    url = conversation.headers["location"]

    answered: dict[str, Any] = {}
    scripted_llm.resume.clear()
    scripted_llm.holding.clear()
    scripted_llm.hold.set()
    asking = threading.Thread(target=lambda: answered.update(events=session.ask(url, "What is the meal allowance?")))
    asking.start()
    try:
        # The web has its sources and the first token; the model is still writing.
        wait_until(scripted_llm.holding.is_set, 120, lambda: f"the answer never started:\n{fault_stack.logs()}")
        private_postgres.restart(mode="immediate")
    finally:
        scripted_llm.hold.clear()
        scripted_llm.resume.set()
        asking.join(300)
    events = answered["events"]
    assert events[0]["event"] == "sources" and events[0]["citations"][0]["document"] == "travel.md"
    assert events[-1]["event"] == "done", events[-1]
    assert "".join(e["text"] for e in events if e["event"] == "token") == "".join(SCRIPTED_ANSWER)

    # Stored in the database that came back, and the conversation goes on.
    page = session.http.get(url).text
    assert "is 85 euros" in page
    again = session.ask(url, "And what is the meal allowance at home?")
    assert again[-1]["event"] == "done", again[-1]
