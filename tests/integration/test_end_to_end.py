"""A person's whole first session, against real processes: sign in, create a
collection, upload files (good and bad), watch them become ready, ask a question
and read a streamed answer whose citations point at the right document and page.

Runs against the embedded llama.cpp server and, where the vLLM environment is
built, against real vLLM (the production LLM path).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.support.documents import HANDBOOK_PAGES, make_docx, make_pdf
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.embedded]

STATUS_ORDER = ["queued", "parsing", "embedding", "ready"]


def _wait_finished(session, status_url: str, expected: int, timeout: float = 300) -> tuple[list[dict], dict]:
    """Poll the portal's status endpoint like the page does; record every status seen."""
    seen: dict[str, list[str]] = {}

    def finished() -> list[dict] | None:
        data = session.http.get(status_url).json()
        for doc in data["documents"]:
            history = seen.setdefault(doc["name"], [])
            if not history or history[-1] != doc["status"]:
                history.append(doc["status"])
        if len(data["documents"]) >= expected and all(d["status"] in ("ready", "failed") for d in data["documents"]):
            return data["documents"]
        return None

    documents = wait_until(finished, timeout, lambda: f"documents not finished after {timeout}s: {seen}")
    return documents, seen


@pytest.mark.parametrize("stack", ["llama_server", pytest.param("vllm_server", marks=pytest.mark.vllm)], indirect=True)
def test_upload_then_ask_streams_a_cited_answer(stack: Stack) -> None:
    session = stack.client()
    assert session.login("admin", ADMIN_PASSWORD).status_code == 302

    created = session.post("/portal/", {"name": "Handbook", "description": "Company policies"})
    assert created.status_code == 302
    collection_url = created.headers["location"]
    match = re.search(r"/collections/(\d+)/", collection_url)
    assert match, collection_url
    collection_id = int(match.group(1))

    files = [
        ("files", ("handbook.pdf", make_pdf(HANDBOOK_PAGES), "application/pdf")),
        ("files", ("onboarding.docx", make_docx([("Onboarding", "New staff receive a laptop on day one.")]), "")),
        ("files", ("faq.md", b"# FAQ\n\n## Parking\n\nParking permits are issued by reception.\n", "text/markdown")),
        # Bad input must fail with a reason and not hold up the rest.
        ("files", ("empty.txt", b"", "text/plain")),
        ("files", ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage without xref", "application/pdf")),
        # The extension lies: the content is a PDF.
        ("files", ("notes.docx", make_pdf(["Quarterly notes\nThe Falcon project ships in March."]), "")),
    ]
    upload = session.http.post(
        f"/portal/collections/{collection_id}/upload", data={"csrfmiddlewaretoken": session.csrf}, files=files
    )
    assert upload.status_code == 302

    documents, history = _wait_finished(session, f"/portal/collections/{collection_id}/documents.json", len(files))
    by_name = {d["name"]: d for d in documents}
    assert {
        n: by_name[n]["status"] for n in ("handbook.pdf", "onboarding.docx", "faq.md", "notes.docx")
    } == dict.fromkeys(("handbook.pdf", "onboarding.docx", "faq.md", "notes.docx"), "ready")
    assert by_name["handbook.pdf"]["pages"] == 3
    assert by_name["handbook.pdf"]["chunks"] >= 1
    assert by_name["notes.docx"]["file_type"] == "pdf"
    assert by_name["empty.txt"]["status"] == "failed"
    assert "empty" in by_name["empty.txt"]["error"].lower()
    assert by_name["broken.pdf"]["status"] == "failed"
    assert "damaged" in by_name["broken.pdf"]["error"].lower()
    for name, statuses in history.items():
        if by_name[name]["status"] == "ready":
            # Statuses only ever move forward: queued -> parsing -> embedding -> ready.
            positions = [STATUS_ORDER.index(s) for s in statuses]
            assert positions == sorted(positions), (name, statuses)

    conversation = session.post("/chat/new", {"collection": collection_id})
    assert conversation.status_code == 302
    conversation_url = conversation.headers["location"]

    events = session.ask(conversation_url, "What is the daily meal allowance for international travel?")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sources"
    assert kinds[-1] == "done", events[-1]
    tokens = [e["text"] for e in events if e["event"] == "token"]
    assert len(tokens) > 3, "the answer should arrive in many pieces, not one"
    assert "".join(tokens).strip()

    top = events[0]["citations"][0]
    assert top["document"] == "handbook.pdf"
    assert top["page"] == 2
    assert "85 euros" in top["text"]
    assert events[-1]["model"] == stack.llm.model

    # The stored conversation shows the answer with its numbered citations.
    page = session.http.get(conversation_url).text
    assert "handbook.pdf" in page and "page 2" in page
    assert f"Answered by {stack.llm.model}" in page

    # The audit log recorded the session; the shell exports it.
    export = stack.manage("audit", "export", "--format", "jsonl", timeout=120)
    assert export.returncode == 0, export.stderr[-2000:]
    records = [json.loads(line) for line in export.stdout.splitlines() if line.startswith("{")]
    actions = [r["action"] for r in records]
    assert {"user.login", "collection.created"} <= set(actions)
    assert actions.count("document.uploaded") == len(files)
    answered = [r for r in records if r["action"] == "question.answered"]
    assert answered[-1]["actor_username"] == "admin"
    assert answered[-1]["details"]["chunk_ids"] == [c["chunk_id"] for c in events[0]["citations"]]
    assert answered[-1]["details"]["model"] == stack.llm.model
