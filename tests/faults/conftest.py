"""A whole product on a PostgreSQL and a Redis of its own, which its tests restart.

On both CI runs (services and embedded) these stacks use private servers on free
ports (``tests.support.private_servers``): the machine's shared PostgreSQL and Redis
are never stopped. The LLM is a scripted OpenAI-compatible server in the test process
(``ScriptedLLM``) whose answer a test can hold mid-stream.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from assistant import processes
from tests.conftest import REPO, LLMServer
from tests.integration.conftest import Stack
from tests.support.private_servers import PrivatePostgres, PrivateRedis, available
from tests.support.processes import Process, free_port

SCRIPTED_MODEL = "scripted-fault-model"
SCRIPTED_ANSWER = ["The daily meal ", "allowance abroad ", "is 85 euros ", "[1]."]


class ScriptedLLM:
    """Streams ``SCRIPTED_ANSWER``; while ``hold`` is set, stops after the first piece until ``resume`` is set."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.resume = threading.Event()
        self.holding = threading.Event()  # a stream is waiting on ``resume`` now
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [{"id": SCRIPTED_MODEL, "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not request.get("stream"):
                    message = {"role": "assistant", "content": "".join(SCRIPTED_ANSWER)}
                    body = json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for number, piece in enumerate(SCRIPTED_ANSWER):
                    if number == 1 and scripted.hold.is_set():
                        scripted.holding.set()
                        scripted.resume.wait(300)
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.resume.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    reason = available()
    if reason:
        pytest.skip(reason)
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    reason = available()
    if reason:
        pytest.skip(reason)
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def scripted_llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def fault_stack(
    tmp_path_factory: pytest.TempPathFactory,
    private_postgres: PrivatePostgres,
    private_redis: PrivateRedis,
    scripted_llm: ScriptedLLM,
) -> Iterator[Stack]:
    """Web, a worker with its sweep, PostgreSQL and Redis of this module's own; the LLM is scripted."""
    from tests.integration.conftest import ADMIN_PASSWORD

    root = tmp_path_factory.mktemp("fault-stack")
    env = dict(os.environ)
    env.update(
        ASSISTANT_DATA_DIR=str(root / "data"),
        DATABASE_URL=private_postgres.create_database(f"assistant_faults_{uuid.uuid4().hex[:8]}"),
        CELERY_BROKER_URL=private_redis.url,
        LLM_BASE_URL=scripted_llm.base_url,
        LLM_MODEL=SCRIPTED_MODEL,
        ASSISTANT_ADMIN_USER="admin",
        ASSISTANT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        QUERY_REWRITE_TIMEOUT_S="0",
        # Short enough for a test to watch the sweep put documents back on track.
        INGEST_HEARTBEAT_S="1",
        INGEST_STALL_AFTER_S="6",
        INGEST_SWEEP_EVERY_S="2",
        INGEST_RESEND_QUEUED_AFTER_S="5",
    )
    live = Stack(
        base_url=f"http://127.0.0.1:{free_port()}",
        env=env,
        llm=LLMServer(kind="llamacpp", base_url=scripted_llm.base_url, model=SCRIPTED_MODEL),
    )
    for step in (["migrate", "--noinput"], ["bootstrap_admin"], ["collectstatic", "--noinput", "--verbosity", "0"]):
        result = live.manage(*step)
        assert result.returncode == 0, result.stderr
    Path(live.log_dir).mkdir(parents=True)
    port = int(live.base_url.rsplit(":", 1)[1])
    try:
        live.start_worker()
        live.processes["web"] = Process(
            "web", processes.web_command(host="127.0.0.1", port=port), env=env, log_dir=live.log_dir, cwd=REPO
        )
        live.processes["web"].wait_http(f"{live.base_url}/healthz", timeout=60)
        yield live
    finally:
        for process in live.processes.values():
            process.stop()
