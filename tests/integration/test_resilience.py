"""Nothing stuck, nothing lost: real workers are killed, broker messages are lost and
time limits are hit, and every document still ends ``ready`` or ``failed`` with a
reason. Runs against Redis and PostgreSQL on the services run, and against the
file-system broker and SQLite on the embedded run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, _require
from tests.integration.conftest import ADMIN_PASSWORD, BrowserSession, Stack
from tests.support.blocking import BLOCK_EMBEDDING, BLOCK_PARSING, blocking_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def long_text(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real long document: several hundred SciFact abstracts in one text file."""
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    _require(corpus.exists(), f"{corpus} not found")
    parts = []
    with open(corpus) as handle:
        for line, _ in zip(handle, range(450), strict=False):
            doc = json.loads(line)
            parts.append(f"{doc['title']}\n\n{doc['text']}\n")
    return "\n".join(parts).encode()


@pytest.fixture(scope="module")
def session(stack: Stack) -> BrowserSession:
    session = stack.client()
    assert session.login("admin", ADMIN_PASSWORD).status_code == 302
    return session


def new_collection(session: BrowserSession, name: str) -> int:
    response = session.post("/portal/", {"name": name})
    match = re.search(r"/collections/(\d+)/", response.headers.get("location", ""))
    assert match, response.text[:500]
    return int(match.group(1))


def upload(session: BrowserSession, collection_id: int, files: dict[str, bytes]) -> None:
    response = session.http.post(
        f"/portal/collections/{collection_id}/upload",
        data={"csrfmiddlewaretoken": session.csrf},
        files=[("files", (name, content)) for name, content in files.items()],
    )
    assert response.status_code == 302


def documents(session: BrowserSession, collection_id: int) -> dict[str, dict]:
    data = session.http.get(f"/portal/collections/{collection_id}/documents.json").json()
    return {d["name"]: d for d in data["documents"]}


def wait_for(
    session: BrowserSession, collection_id: int, condition, *, stack: Stack, timeout: float = 240
) -> dict[str, dict]:
    def met() -> dict[str, dict] | None:
        docs = documents(session, collection_id)
        return docs if condition(docs) else None

    return wait_until(
        met,
        timeout,
        lambda: f"condition not met in {timeout}s: {documents(session, collection_id)}\n{stack.logs()}",
        interval=0.3,
    )


def finished(docs: dict[str, dict]) -> bool:
    return bool(docs) and all(d["status"] in ("ready", "failed") for d in docs.values())


@pytest.mark.embedded
def test_worker_killed_mid_document_is_rescued_with_one_set_of_chunks(stack: Stack, session, long_text) -> None:
    # The worker blocks on the document's last passages, so it is caught mid-embedding
    # however fast this machine embeds the rest.
    stack.start_worker(**blocking_env(stack.env))
    collection_id = new_collection(session, "Killed worker")
    upload(session, collection_id, {"abstracts.txt": long_text + f"\n{BLOCK_EMBEDDING}\n".encode()})
    wait_for(session, collection_id, lambda d: d["abstracts.txt"]["status"] == "embedding", stack=stack)

    worker = stack.processes["worker"]
    worker.kill()  # SIGKILL to the whole worker, children included
    worker.proc.wait(timeout=30)
    # Orphaned: the sweep that would rescue it ran in the worker that is gone.
    assert documents(session, collection_id)["abstracts.txt"]["status"] == "embedding"
    stack.start_worker()

    docs = wait_for(session, collection_id, finished, stack=stack)
    doc = docs["abstracts.txt"]
    assert doc["status"] == "ready", doc
    assert doc["attempts"] == 2
    assert doc["chunks"] > 100
    assert doc["progress_done"] == doc["progress_total"] == doc["chunks"]
    # Every passage retrieval ranks, whatever its relevance: duplicates would show here.
    retrieved = json.loads(
        stack.manage(
            "ask", "--collection", "Killed worker", "--retrieve-only", "--json", "-k", "50", "cells",
            RETRIEVAL_MIN_RELEVANCE="-1",
        ).stdout
    )  # fmt: skip
    ids = [c["chunk_id"] for c in retrieved["citations"]]
    assert len(ids) == len(set(ids)) == 50  # one set of chunks, no duplicates from the first attempt


@pytest.mark.embedded
def test_messages_lost_by_the_broker_are_sent_again(stack: Stack, session) -> None:
    stack.processes["worker"].stop()
    collection_id = new_collection(session, "Lost messages")
    upload(session, collection_id, {"a.md": b"# Alpha\n\nAlpha text.", "b.md": b"# Beta\n\nBeta text."})
    assert {d["status"] for d in documents(session, collection_id).values()} == {"queued"}

    broker = stack.env.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis"):
        import redis

        # What a Redis restart without persistence does: every queued message is gone.
        assert redis.Redis.from_url(broker).flushdb()
        assert redis.Redis.from_url(broker).dbsize() == 0
    else:
        queue = Path(stack.env["ASSISTANT_DATA_DIR"]) / "broker" / "queue"
        shutil.rmtree(queue)
        queue.mkdir()
    stack.start_worker()
    docs = wait_for(session, collection_id, finished, stack=stack, timeout=120)
    assert {d["status"] for d in docs.values()} == {"ready"}


def test_a_file_over_the_time_limit_fails_with_a_reason_and_the_batch_goes_on(stack: Stack, tmp_path: Path) -> None:
    # An admin lowers the limit for the whole site (it travels with each task). The
    # worker blocks on stuck.txt until the limit ends it, so the limit fires however
    # fast the machine is; small.md, in the same batch, goes back to the queue. 60 s
    # leaves a slow machine room to load the embedding model for small.md.
    stack.start_worker(INGEST_TIME_LIMIT_S="60", **blocking_env(stack.env))
    (tmp_path / "stuck.txt").write_text(f"A file that takes forever.\n{BLOCK_PARSING}\n")
    (tmp_path / "small.md").write_bytes(b"# Small\n\nA short note.")
    result = stack.manage("ingest", "--collection", "Time limit", "--wait", "--json", str(tmp_path),
                          INGEST_TIME_LIMIT_S="60")  # fmt: skip
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert result.returncode == 1, result.stderr
    assert rows["stuck.txt"]["status"] == "failed"
    assert rows["stuck.txt"]["error"] == "Processing took longer than the time limit of 60 seconds."
    assert rows["small.md"]["status"] == "ready", rows
    stack.start_worker()  # back to the normal limits for whatever runs next
