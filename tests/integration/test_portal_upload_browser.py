"""Uploading in a real browser (Debian's Chromium through Playwright), on a whole running
product: a folder of files (one of them a broken PDF) is chosen, each file shows its own
progress and outcome, and the documents table follows every file to ready or failed
without the page reloading; a file dropped on the drop zone goes the same way; the
document page shows the passages the assistant sees, with their page numbers.

The LLM server is the scripted one of ``test_chat_browser.py``: nothing here asks it
anything, and it starts in no time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import test_browser as browser
from tests.integration.conftest import Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.integration.test_chat_browser import _accessible, scripted_llm  # noqa: F401 - the stack's LLM
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["scripted_llm"], indirect=True)]
watch = browser.watch
page = browser.page

DROP_A_FILE = """() => {
  const data = new DataTransfer();
  data.items.add(new File(["Dropped note: the kitchen closes at three."], "dropped.txt", { type: "text/plain" }));
  const zone = document.getElementById("dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
  }
}"""


def _folder(root: Path) -> dict[str, str]:
    """A folder as people keep one, and the status each of its files must end in."""
    (root / "minutes").mkdir(parents=True)
    (root / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (root / "notes.md").write_text("# Notes\n\nThe team meets on Mondays.\n")
    (root / "agenda.txt").write_text("Agenda: budget, hiring, the new office.\n")
    (root / "minutes" / "march.csv").write_text("item,owner\nbudget,Ana\nhiring,Ben\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage, no pages, no xref\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # not a document: skipped
    return {"handbook.pdf": "ready", "notes.md": "ready", "agenda.txt": "ready", "march.csv": "ready",
            "broken.pdf": "failed"}  # fmt: skip


def test_a_folder_uploads_live_and_a_document_shows_its_passages(
    stack: Stack, page, watch: Watch, tmp_path: Path
) -> None:
    _sign_in(page)
    page.goto("/portal/")
    page.fill("input[name=name]", "Uploads")
    page.click("text=Create collection")
    page.wait_for_url("**/portal/collections/*/")
    page.evaluate("window.stayedOnThePage = true")

    expected = _folder(tmp_path / "team")
    page.set_input_files("#upload-folder", str(tmp_path / "team"))
    page.click("#upload-form button[type=submit]")
    progress = page.locator("#upload-progress li")
    progress.nth(len(expected) - 1).wait_for()
    page.wait_for_function("() => !document.querySelector('#upload-progress li.sending')")
    assert progress.count() == len(expected)  # the hidden file was left out
    assert page.locator("#upload-progress li.accepted").count() == len(expected)
    assert page.locator("#upload-progress progress").evaluate_all("bars => bars.every((b) => b.value === 100)")

    # Every file reaches its end state in the table, live: the page is never reloaded.
    for name, status in expected.items():
        page.wait_for_selector(f"#documents tr:has-text('{name}') span.status.{status}", timeout=180_000)
    failed = page.locator("#documents tr:has-text('broken.pdf')")
    assert failed.locator(".error").inner_text().strip()
    assert failed.locator("button:has-text('Retry')").count() == 1
    assert page.inner_text("#documents tr:has-text('handbook.pdf') td:nth-child(4)") == "3"  # pages
    assert page.evaluate("window.stayedOnThePage") is True

    # A dropped file goes the same way.
    page.evaluate(DROP_A_FILE)
    page.wait_for_selector("#upload-progress li.accepted:has-text('dropped.txt')")
    page.wait_for_selector("#documents tr:has-text('dropped.txt') span.status.ready", timeout=180_000)
    assert page.evaluate("window.stayedOnThePage") is True
    _accessible(page)
    _snapshot(page, "portal-upload")

    # Sorting and filtering are links and a form: the table keeps following them.
    page.select_option("select[name=status]", "failed")
    page.click("#documents-filters button[type=submit]")
    page.wait_for_url("**status=failed**")
    assert page.locator("#documents tbody tr").count() == 1

    page.goto(page.url.split("?")[0])
    page.click("#documents a:has-text('handbook.pdf')")
    page.wait_for_url("**/portal/documents/*/")
    passages = page.locator("#passages article.passage")
    assert passages.count() >= 3
    assert "page 2" in page.inner_text("#passages") and "Zephyr" in page.inner_text("#passages")
    history = page.inner_text("#history")
    assert all(status in history for status in ("queued", "parsing", "embedding", "ready"))
    assert page.locator("button:has-text('Chat with this document')").count() == 1
    _accessible(page)
    _snapshot(page, "document-page")

    page.click("button:has-text('Chat with this document')")
    page.wait_for_url("**/chat/*/")
    _assert_clean(stack, watch)
