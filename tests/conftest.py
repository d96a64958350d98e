"""Shared fixtures: real LLM servers, real files, and a whole running stack.

``make test`` runs this suite on PostgreSQL + Redis (with vLLM too), then again on
the embedded defaults (SQLite + file-system broker) with ``--embedded-pass``: the
tests that touch the database, and the live tests marked ``embedded`` that prove
``make run``'s defaults end to end. Each run gets its own ``ASSISTANT_DATA_DIR``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import Process, free_port

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", REPO.parent / "shared" / "data"))


# A test that requests one of these reads or writes the pass's database.
_DATABASE_FIXTURES = frozenset({"db", "transactional_db", "live_server"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--embedded-pass",
        action="store_true",
        help="the second pass of `make test`: only the tests whose outcome can depend on the "
        "database or broker (those touching the database, and those marked `embedded`)",
    )


def _embedded_pass_runs(item: pytest.Item) -> bool:
    """Whether the embedded pass has anything to prove with this test.

    A test that touches no database and starts nothing reads nothing the embedded pass
    changes: the services pass already ran it on the same code. Live tests start a
    whole stack each, so only the ones marked ``embedded`` run again.
    """
    if item.get_closest_marker("embedded"):
        return True
    if item.get_closest_marker("live"):
        return False
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(item.get_closest_marker("django_db")) or bool(fixtures & _DATABASE_FIXTURES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--embedded-pass"):
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        (kept if _embedded_pass_runs(item) else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _require(condition: bool, reason: str) -> None:
    """Skip locally when an optional heavy piece is missing; in CI it is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def formats_dir() -> Path:
    path = SHARED_DATA / "formats"
    _require(path.is_dir(), f"shared data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_storage(settings, tmp_path: Path) -> None:
    """Uploaded files and indexes of each test live in that test's own folder.

    In-process tests render pages without a collectstatic step; the live stack
    tests run the real manifest storage.
    """
    settings.MEDIA_ROOT = tmp_path / "files"
    settings.INDEX_DIR = tmp_path / "indexes"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@dataclass(frozen=True)
class LLMServer:
    kind: str
    base_url: str
    model: str


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    """The embedded default: llama.cpp serving the packaged SmolLM2."""
    from assistant import local_llm

    port = free_port()
    log_dir = tmp_path_factory.mktemp("llama")
    command = local_llm.server_command(port=port, threads=2, context=4096)
    process = Process("llama", command, env=dict(os.environ), log_dir=log_dir, cwd=REPO)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120)
        from django.conf import settings

        yield LLMServer(kind="llamacpp", base_url=f"http://127.0.0.1:{port}/v1", model=settings.LLM_MODEL)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    """Real vLLM (the CPU build) serving a safetensors copy of the same SmolLM2."""
    python = os.environ.get("ASSISTANT_VLLM_PYTHON", "")
    model_dir = os.environ.get("ASSISTANT_VLLM_MODEL", "")
    _require(bool(python) and Path(python).exists(), "vLLM environment not built (run `make test`)")
    _require(bool(model_dir) and Path(model_dir, "config.json").exists(), "converted model missing (`make test`)")
    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
        "--served-model-name", "smollm2-vllm", "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "4096", "--dtype", "bfloat16", "--enforce-eager",
    ]  # fmt: skip
    process = Process("vllm", command, env=env, log_dir=tmp_path_factory.mktemp("vllm"), cwd=REPO)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=400)
        yield LLMServer(kind="vllm", base_url=f"http://127.0.0.1:{port}/v1", model="smollm2-vllm")
    finally:
        process.stop()


@pytest.fixture
def llm(settings, llama_server: LLMServer) -> LLMServer:
    """Point the in-process settings at the real local llama.cpp server."""
    settings.LLM_BASE_URL = llama_server.base_url
    settings.LLM_BASE_URLS = [llama_server.base_url]
    settings.LLM_MODEL = llama_server.model
    return llama_server


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]
