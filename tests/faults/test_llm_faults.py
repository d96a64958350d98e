"""The LLM server misbehaving, against the whole running product over real HTTP.

The web process (uvicorn, as in production) talks to a scripted OpenAI-compatible
server on loopback whose behaviour each test sets: down (connection refused), slower
than the read timeout (headers, then never a token), a malformed stream (a chunk that
is not JSON, a body cut off mid-answer, a web page instead of a stream) and an HTTP
500 with an error body. For each: the asker gets a message that names the problem,
the question and whatever was streamed are stored with that message, the audit log
records the failed answer, ``/readyz`` names the LLM when it is down, and the next
question in the same conversation is answered once the server behaves again.

While a stream waits on the model (the scripted server holds the request and sends
only keep-alive comments until the test lets it go), the web process holds no
database connection: checked from outside the process, on PostgreSQL in
``pg_stat_activity`` and on SQLite in the process's open files, for the chat page,
a follow-up's rewrite, the API's ``/ask/stream`` and ``/v1/chat/completions``.

Every wait is on something the test controls; the read timeout (10 s here) is only
reached by the server that never sends a token, and leaves every other answer room on
a slow or busy CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import LLMServer
from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.integration.conftest import stack as stack  # the whole running product (a module fixture)
from tests.integration.conftest import stack_template as stack_template  # what each stack is copied from
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.held import connections_held
from tests.support.scripted_llm import ANSWER, MODEL, ScriptedLLM
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["programmed_llm"], indirect=True)]
T = TypeVar("T")
READ_TIMEOUT_S = 10
WHOLE_ANSWER = "".join(ANSWER)


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def programmed_llm(scripted: ScriptedLLM) -> Iterator[LLMServer]:
    """The stack's LLM: the scripted server, with a short read timeout for the web process.

    A follow-up's rewrite gets all the time it needs, so a held rewrite is still
    held when the test looks.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLM_READ_TIMEOUT", str(READ_TIMEOUT_S))
        patch.setenv("LLM_CONNECT_TIMEOUT", "2")
        patch.setenv("QUERY_REWRITE_TIMEOUT_S", "120")
        yield LLMServer(kind="scripted", base_url=scripted.base_url, model=MODEL)


class Site:
    """The stack seen as a signed-in admin in a browser and as an API client."""

    def __init__(self, stack: Stack, scripted: ScriptedLLM) -> None:
        self.stack = stack
        self.scripted = scripted
        self.browser = stack.client()
        assert self.browser.login("admin", ADMIN_PASSWORD).status_code == 302
        result = stack.manage("token", "create", "--user", "admin", "--scope", "write", "--name", "faults")
        assert result.returncode == 0, result.stderr
        self.token = result.stdout.strip()
        collections = self.api("GET", "/api/v1/collections").json()["items"]
        self.collection_id = next(c["id"] for c in collections if c["name"] == "Handbook")

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(
            method, self.stack.base_url + path, headers=headers, trust_env=False, timeout=120, **kwargs
        )

    def conversation(self) -> str:
        response = self.browser.post("/chat/new", {"collection": self.collection_id})
        assert response.status_code == 302, response.text[:300]
        return response.headers["location"]

    def ask(self, conversation_url: str, question: str) -> list[dict[str, Any]]:
        return self.browser.ask(conversation_url, question)

    def held(self) -> list[str]:
        env = self.stack.env
        return connections_held(
            self.stack.processes["web"].proc.pid,
            database_url=env.get("DATABASE_URL", ""),
            sqlite_path=Path(env["ASSISTANT_DATA_DIR"]) / "db.sqlite3",
        )

    def rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of the stack's own database (``?`` marks a parameter)."""
        url = self.stack.env.get("DATABASE_URL", "")
        if url.startswith("postgres"):
            import psycopg

            with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
                return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        path = Path(self.stack.env["ASSISTANT_DATA_DIR"]) / "db.sqlite3"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return list(conn.execute(sql, params).fetchall())


@pytest.fixture(scope="module")
def site(stack: Stack, scripted: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Site:
    handbook = tmp_path_factory.mktemp("handbook") / "handbook.pdf"
    handbook.write_bytes(make_pdf(HANDBOOK_PAGES))
    result = stack.manage("ingest", "--collection", "Handbook", "--inline", str(handbook))
    assert result.returncode == 0, result.stderr
    return Site(stack, scripted)


@pytest.fixture(autouse=True)
def _answering(scripted: ScriptedLLM) -> Iterator[None]:
    """Each test starts and ends with a server that answers."""
    scripted.script = "answer"
    yield
    scripted.script = "answer"
    scripted.release()
    if scripted._server is None:
        scripted.start()


def _conversation_id(url: str) -> int:
    return int(url.rstrip("/").rsplit("/", 1)[1])


def _messages(site: Site, conversation_id: int) -> list[tuple[str, str, str]]:
    """(role, content, error) of the conversation's messages, oldest first."""
    return [
        (str(role), str(content), str(error))
        for role, content, error in site.rows(
            "SELECT role, content, error FROM chat_message WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
    ]


def _audited(site: Site, message_id: int) -> dict[str, Any]:
    rows = site.rows(
        "SELECT details FROM audit_auditevent WHERE action = 'question.answered' AND target_id = ? ORDER BY id",
        (str(message_id),),
    )
    assert len(rows) == 1, rows
    details = rows[0][0]
    return json.loads(details) if isinstance(details, str) else dict(details)


# --- no database connection while the model is waited on -------------------------------


def _while_held(site: Site, request: Callable[[], T], *, holds: int = 1) -> tuple[T, list[list[str]]]:
    """Run ``request`` while the scripted server holds each of its ``holds`` model calls.

    Returns the request's result and what the web process held during each hold.
    """
    scripted = site.scripted
    scripted.script = "hold"
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(request())
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    seen = []
    before = scripted.requests
    thread.start()
    try:
        for n in range(holds):

            def called(n: int = n) -> bool:
                return (scripted.held == 1 and scripted.requests == before + n + 1) or bool(failure)

            wait_until(
                called,
                60,
                lambda: f"no model call held: {failure}\n{site.stack.logs()}",
                interval=0.05,
            )
            if failure:
                break
            seen.append(site.held())
            if n == holds - 1:
                scripted.script = "answer"
            scripted.release()
    finally:
        scripted.script = "answer"
        scripted.release()
        thread.join(120)
    if failure:
        raise failure[0]
    return result[0], seen


def test_the_detector_sees_a_connection_this_process_holds(site: Site) -> None:
    # The check the tests below rely on finds a connection that is held.
    url = site.stack.env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as pg:
            pg.execute("SELECT 1")
            assert connections_held(os.getpid(), database_url=url, sqlite_path=Path("/nonexistent"))
        return
    path = Path(site.stack.env["ASSISTANT_DATA_DIR"]) / "db.sqlite3"
    conn = sqlite3.connect(path)
    try:
        conn.execute("SELECT 1").fetchall()
        assert connections_held(os.getpid(), database_url="", sqlite_path=path)
    finally:
        conn.close()
    assert not connections_held(os.getpid(), database_url="", sqlite_path=path)


def test_the_chat_page_holds_no_connection_while_the_model_thinks(site: Site) -> None:
    url = site.conversation()
    events, seen = _while_held(site, lambda: site.ask(url, "What is the meal allowance abroad?"))
    assert seen == [[]], seen
    assert events[0]["event"] == "sources" and events[0]["citations"]
    assert events[-1]["event"] == "done", events[-1]
    assert events[-1]["text"].startswith(WHOLE_ANSWER.removesuffix(" [1]."))

    # A follow-up is first rewritten by the model, then answered: two waits, none holding.
    events, seen = _while_held(site, lambda: site.ask(url, "And at home?"), holds=2)
    assert seen == [[], []], seen
    assert events[-1]["event"] == "done", events[-1]


def test_the_api_stream_holds_no_connection_while_the_model_thinks(site: Site) -> None:
    def ask() -> list[dict[str, Any]]:
        events = []
        body = {"question": "What is the meal allowance abroad?", "collection_id": site.collection_id}
        headers = {"Authorization": f"Bearer {site.token}"}
        with httpx.stream(
            "POST", f"{site.stack.base_url}/api/v1/ask/stream", json=body, headers=headers, trust_env=False,
            timeout=120,
        ) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
        return events

    events, seen = _while_held(site, ask)
    assert seen == [[]], seen
    assert events[-1]["event"] == "done", events[-1]


def test_the_openai_stream_holds_no_connection_while_the_model_thinks(site: Site) -> None:
    def ask() -> list[str]:
        body = {"model": "Handbook", "stream": True, "messages": [{"role": "user", "content": "Meal allowance?"}]}
        headers = {"Authorization": f"Bearer {site.token}"}
        with httpx.stream(
            "POST", f"{site.stack.base_url}/v1/chat/completions", json=body, headers=headers, trust_env=False,
            timeout=120,
        ) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            return [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]

    lines, seen = _while_held(site, ask)
    assert seen == [[]], seen
    assert lines[-1] == "[DONE]"
    pieces = [json.loads(line)["choices"][0]["delta"].get("content", "") for line in lines[:-1]]
    assert "".join(pieces).startswith(WHOLE_ANSWER.removesuffix(" [1]."))


# --- faults ------------------------------------------------------------------------------

FAULTS = {
    # script: (what the asker is told, what of the answer was streamed and is kept)
    "error500": ("refused the request (500): CUDA out of memory", ""),
    "html": ("did not stream its answer (it sent text/html)", ""),
    "bad_json": ("sent a malformed piece of its answer", ANSWER[0].strip()),
    "cut": ("broke off its answer before it was complete", ANSWER[0].strip()),
    "stall": ("did not answer in time", ""),
}


@pytest.mark.parametrize("script", list(FAULTS))
def test_a_misbehaving_llm_server_fails_the_answer_clearly_and_loses_nothing(site: Site, script: str) -> None:
    told, kept = FAULTS[script]
    url = site.conversation()
    conversation_id = _conversation_id(url)
    site.scripted.script = script
    events = site.ask(url, "What is the meal allowance abroad?")
    assert events[0]["event"] == "sources"
    end = events[-1]
    assert end["event"] == "error", end
    assert told in end["message"], end["message"]
    assert "internal" not in end["message"].lower()
    assert end["text"].strip() == kept
    # Stored: the question, and the answer as far as it went with the reason.
    assert _messages(site, conversation_id) == [
        ("user", "What is the meal allowance abroad?", ""),
        ("assistant", end["text"], end["message"]),
    ]
    assert _audited(site, end["message_id"])["error"] == end["message"]
    # The server still lists its model: readiness does not blame it for one bad answer.
    assert site.browser.http.get("/readyz").json()["checks"]["llm"]["status"] == "ok"

    site.scripted.script = "answer"
    events = site.ask(url, "And the meal allowance at home?")
    assert events[-1]["event"] == "done", events[-1]
    assert [m[2] for m in _messages(site, conversation_id)] == ["", end["message"], "", ""]


def test_the_llm_server_down_is_named_and_the_next_question_works_once_it_is_back(site: Site) -> None:
    url = site.conversation()
    conversation_id = _conversation_id(url)
    site.scripted.stop()
    events = site.ask(url, "What is the meal allowance abroad?")
    end = events[-1]
    assert end["event"] == "error", end
    assert "is not reachable" in end["message"] and "administrator" in end["message"], end["message"]
    assert _messages(site, conversation_id) == [
        ("user", "What is the meal allowance abroad?", ""),
        ("assistant", "", end["message"]),
    ]
    assert _audited(site, end["message_id"])["error"] == end["message"]
    ready = site.browser.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["llm"]

    # The API says the same, as an error with a code, not a 500.
    response = site.api("POST", "/api/v1/ask", json={"question": "Meals?", "conversation_id": conversation_id})
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "generation_failed"
    assert "is not reachable" in response.json()["error"]["message"]

    site.scripted.start()
    assert site.browser.http.get("/readyz").status_code == 200
    events = site.ask(url, "What is the meal allowance abroad?")
    assert events[-1]["event"] == "done", events[-1]
    assert events[-1]["text"].startswith(WHOLE_ANSWER.removesuffix(" [1]."))
    assert [m[0] for m in _messages(site, conversation_id)] == ["user", "assistant"] * 3
