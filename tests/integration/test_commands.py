"""The operator's shell: ``manage.py ingest``, ``ask`` and ``rebuild_index`` as
separate processes against a running worker and LLM server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import Stack
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.live, pytest.mark.embedded]


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("to-ingest")
    (root / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    nested = root / "more"
    nested.mkdir()
    (nested / "faq.md").write_text("# FAQ\n\n## Parking\n\nParking permits are issued by reception on level 2.\n")
    (nested / "empty.txt").write_bytes(b"")
    return root


def test_ingest_wait_reports_each_document_and_fails_on_bad_files(stack: Stack, folder: Path) -> None:
    result = stack.manage("ingest", "--collection", "Shell", "--wait", "--json", str(folder))
    assert result.returncode == 1, result.stderr  # one file is empty
    rows = {r["name"]: r for r in _lines(result.stdout)}
    assert set(rows) == {"handbook.pdf", "faq.md", "empty.txt"}
    assert rows["handbook.pdf"] == {"name": "handbook.pdf", "status": "ready", "pages": 3,
                                    "chunks": rows["handbook.pdf"]["chunks"], "error": ""}  # fmt: skip
    assert rows["handbook.pdf"]["chunks"] >= 1
    assert rows["faq.md"]["status"] == "ready"
    assert rows["empty.txt"]["status"] == "failed"
    assert "empty.txt" in result.stderr and "empty" in rows["empty.txt"]["error"].lower()


def test_ingest_same_bytes_again_reports_duplicates(stack: Stack, folder: Path) -> None:
    result = stack.manage("ingest", "--collection", "Shell", "--wait", "--json", str(folder / "handbook.pdf"))
    assert result.returncode == 0, result.stderr
    (row,) = _lines(result.stdout)
    assert row["status"] == "duplicate"
    assert row["chunks"] >= 1


def test_ingest_inline_needs_no_worker(stack: Stack, folder: Path) -> None:
    result = stack.manage("ingest", "--collection", "Inline", "--inline", "--json", str(folder / "more" / "faq.md"))
    assert result.returncode == 0, result.stderr
    (row,) = _lines(result.stdout)
    assert row["status"] == "ready"


def test_ask_retrieve_only_returns_the_right_page(stack: Stack) -> None:
    result = stack.manage(
        "ask", "--collection", "Shell", "--retrieve-only", "--json", "Where are lost badges reported?"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"] is None
    top = payload["citations"][0]
    assert set(top) == {"document", "page", "chunk_id", "score", "text"}
    assert (top["document"], top["page"]) == ("handbook.pdf", 3)


def test_ask_answers_with_model_and_citations(stack: Stack) -> None:
    result = stack.manage("ask", "--collection", "Shell", "--json", "How are parking permits issued?")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"].strip()
    assert payload["model"] == stack.llm.model
    assert payload["citations"][0]["document"] == "faq.md"


def test_ask_unknown_collection_is_a_clear_error(stack: Stack) -> None:
    result = stack.manage("ask", "--collection", "Nope", "anything")
    assert result.returncode != 0
    assert "No collection named 'Nope'" in result.stderr


def test_rebuild_index_from_database_keeps_results(stack: Stack) -> None:
    before = json.loads(
        stack.manage("ask", "--collection", "Shell", "--retrieve-only", "--json", "meal allowance").stdout
    )
    index_dir = Path(stack.env["ASSISTANT_DATA_DIR"]) / "indexes"
    for path in index_dir.glob("*.faiss"):
        path.unlink()  # the index is a cache: losing it loses nothing
    rebuilt = stack.manage("rebuild_index", "--collection", "Shell")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "Shell:" in rebuilt.stdout and "0 vectors" not in rebuilt.stdout
    after = json.loads(
        stack.manage("ask", "--collection", "Shell", "--retrieve-only", "--json", "meal allowance").stdout
    )
    assert [c["chunk_id"] for c in after["citations"]] == [c["chunk_id"] for c in before["citations"]]
