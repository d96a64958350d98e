"""A whole running product for end-to-end tests: migrated database, a real Celery
worker, the ASGI web server and a real LLM server, all as separate processes.

On the services run the stack gets a database of its own on the real PostgreSQL
and a Redis database of its own; on the embedded run it uses SQLite and the
file-system broker in its own data dir, exactly as ``make run`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import pytest
from django.conf import settings

from assistant import processes
from tests.conftest import REPO, LLMServer
from tests.support.processes import Process, free_port

ADMIN_PASSWORD = "e2e-" + uuid.uuid4().hex[:12]


def live_broker_url(pass_broker: str) -> str:
    """The Redis database a pass's live stacks use: the one below the pass's own.

    A stack empties it when it starts, so it must be no other pass's: `make test` gives
    its two streams 15 and 13 (their stacks 14 and 12).
    """
    parsed = urlparse(pass_broker)
    number = int(parsed.path.lstrip("/") or 0)
    assert number > 0, f"the pass's Redis database must be 1-15 to leave one below it: {pass_broker}"
    return urlunparse(parsed._replace(path=f"/{number - 1}"))


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    llm: LLMServer
    processes: dict[str, Process] = field(default_factory=dict)
    worker_logs: list[str] = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 600, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            env={**self.env, **extra_env}, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def client(self) -> BrowserSession:
        return BrowserSession(self.base_url)

    def start_worker(self, **extra_env: str) -> Process:
        """A real Celery worker (with the periodic sweep), as ``make run`` starts it."""
        previous = self.processes.get("worker")
        if previous is not None:
            previous.stop()
        command = processes.worker_command(beat=True)
        name = f"worker-{len(self.worker_logs)}"
        self.worker_logs.append(name)
        worker = Process(name, command, env={**self.env, **extra_env}, log_dir=self.log_dir, cwd=REPO)
        self.processes["worker"] = worker
        # Consuming, and its beat (the sweep) started: a worker that died on start-up
        # fails here with its log, not later as a document that never moved.
        worker.wait_log(" ready.", timeout=120)
        worker.wait_log("beat: Starting...", timeout=60)
        return worker

    def logs(self, chars: int = 3000) -> str:
        """The tail of every process's log, for a failure message."""
        return "\n".join(f"--- {name}:\n{p.log_tail(chars)}" for name, p in self.processes.items())

    @property
    def log_dir(self) -> Path:
        return Path(self.env["ASSISTANT_DATA_DIR"]).parent / "logs"


class BrowserSession:
    """What a browser does: cookies, the CSRF token, form posts, reading an event stream."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=60)

    @property
    def csrf(self) -> str:
        return self.http.cookies.get("csrftoken") or ""

    def login(self, username: str, password: str) -> httpx.Response:
        self.http.get("/accounts/login/")
        return self.http.post(
            "/accounts/login/", data={"username": username, "password": password, "csrfmiddlewaretoken": self.csrf}
        )

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(url, data={**(data or {}), "csrfmiddlewaretoken": self.csrf}, **kwargs)

    def ask(self, conversation_url: str, question: str) -> list[dict[str, Any]]:
        events = []
        with self.http.stream(
            "POST", f"{conversation_url}ask", data={"question": question}, headers={"X-CSRFToken": self.csrf},
            timeout=httpx.Timeout(300),
        ) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        return events


def _postgres_database(base_url: str, *, template: str = "") -> tuple[str, str]:
    """Create a database beside the configured one (empty, or a copy of ``template``); returns (url, admin url)."""
    import psycopg

    name = f"assistant_live_{uuid.uuid4().hex[:10]}"
    parsed = urlparse(base_url)
    admin_url = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return urlunparse(parsed._replace(path=f"/{name}")), admin_url


def _drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class StackTemplate:
    """A product set up once per pass, that each module's stack starts from a copy of.

    Migrating, creating the admin and collecting the static files take a Django start-up
    each, seconds of CPU that every module's stack repeated. ``database``: on PostgreSQL,
    the migrated database each stack copies (``CREATE DATABASE ... TEMPLATE``); otherwise
    the SQLite file in ``data_dir`` is copied.
    """

    data_dir: Path
    database: str = ""


def _base_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ASSISTANT_DATA_DIR=str(data_dir),
        ASSISTANT_ADMIN_USER="admin",
        ASSISTANT_ADMIN_PASSWORD=ADMIN_PASSWORD,
        # One embedding backend calibration (and ONNX export) for the whole pass, the
        # in-process tests' own: every stack's processes read the choice from there.
        EMBEDDING_CACHE_DIR=str(settings.EMBEDDING_CACHE_DIR),
    )
    env.pop("CELERY_BROKER_URL", None)
    return env


@pytest.fixture(scope="session")
def stack_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackTemplate]:
    root = tmp_path_factory.mktemp("stack-template")
    env = _base_env(root / "data")
    database_url = os.environ.get("DATABASE_URL", "")
    name = admin_url = ""
    if database_url.startswith("postgres"):
        env["DATABASE_URL"], admin_url = _postgres_database(database_url)
        name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
    else:
        env.pop("DATABASE_URL", None)
    try:
        for step in (["migrate", "--noinput"], ["bootstrap_admin"], ["collectstatic", "--noinput", "--verbosity", "0"]):
            result = subprocess.run(
                [sys.executable, "manage.py", *step], env=env, cwd=REPO, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stderr
        yield StackTemplate(data_dir=root / "data", database=name)
    finally:
        if name:
            _drop_postgres_database(admin_url, name)


def _data_dir_from(template: StackTemplate, data_dir: Path) -> None:
    """A data dir of the stack's own: the template's database file (SQLite) and its static files."""
    data_dir.mkdir()
    if not template.database:
        for path in template.data_dir.glob("db.sqlite3*"):
            shutil.copy2(path, data_dir / path.name)
    (data_dir / "static").symlink_to(template.data_dir / "static", target_is_directory=True)


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stack_template: StackTemplate
) -> Iterator[Stack]:
    llm: LLMServer = request.getfixturevalue(getattr(request, "param", "llama_server"))
    root = tmp_path_factory.mktemp("stack")
    env = _base_env(root / "data")
    env.update(
        LLM_BASE_URL=llm.base_url,
        LLM_MODEL=llm.model,
        # Short enough for a test to watch the sweep rescue a killed worker's document.
        INGEST_HEARTBEAT_S="1",
        INGEST_STALL_AFTER_S="6",
        INGEST_SWEEP_EVERY_S="2",
        INGEST_RESEND_QUEUED_AFTER_S="5",
    )
    _data_dir_from(stack_template, root / "data")
    cleanup = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        env["DATABASE_URL"], admin_url = _postgres_database(database_url, template=stack_template.database)
        name = urlparse(env["DATABASE_URL"]).path.lstrip("/")
        cleanup.append(lambda: _drop_postgres_database(admin_url, name))
    else:
        env.pop("DATABASE_URL", None)
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis"):
        import redis

        env["CELERY_BROKER_URL"] = live_broker_url(broker)
        redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()

    port = free_port()
    live = Stack(base_url=f"http://127.0.0.1:{port}", env=env, llm=llm)
    logs = root / "logs"
    logs.mkdir()
    try:
        live.start_worker()
        live.processes["web"] = Process(
            "web", processes.web_command(host="127.0.0.1", port=port), env=env, log_dir=logs, cwd=REPO
        )
        live.processes["web"].wait_http(f"{live.base_url}/healthz", timeout=60)
        yield live
    finally:
        for process in live.processes.values():
            process.stop()
        for undo in cleanup:
            undo()
