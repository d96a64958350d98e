"""The retrieval-test page and the model page in a real browser (Debian's Chromium through
Playwright), on a whole running product with the packaged model on llama.cpp: an admin
compares the retrievers as a reader who may not see the board's minutes and as a board
member who may, then reads what the LLM server reports. Both pages pass the accessibility
checks of the chat's browser test (labels, visible focus, WCAG AA contrast) and do not
scroll sideways at phone width."""

from __future__ import annotations

import pytest

from tests.integration import test_browser as browser
from tests.integration.conftest import Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.integration.test_chat_browser import _accessible
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.live
# The same browser, launch flags and watch as test_browser.py.
watch = browser.watch
page = browser.page

SECRET = "Board minutes: the merger code name is BLUEHERON and the merger closes on 14 May."
QUESTION = "What is the merger code name?"
SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture(scope="module")
def library(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    folder = tmp_path_factory.mktemp("library")
    (folder / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (folder / "minutes.pdf").write_bytes(make_pdf([SECRET]))
    for args in (
        ["user", "add", "boardmember", "--group", "board"],
        ["user", "add", "reader"],
        ["ingest", "--collection", "Handbook", "--inline", str(folder / "handbook.pdf")],
        ["ingest", "--collection", "Handbook", "--inline", "--restrict-to-group", "board", str(folder / "minutes.pdf")],
        ["collection", "grant", "Handbook", "--user", "reader", "--role", "read"],
        ["collection", "grant", "Handbook", "--group", "board", "--role", "read"],
    ):
        result = stack.manage(*args)
        assert result.returncode == 0, result.stderr
    return stack


def _test_as(page, username: str) -> list[str]:
    page.fill("textarea[name=question]", QUESTION)
    page.select_option("select[name=as_user]", label=username)
    # The first search loads the embedding model in the web process: minutes on a busy machine.
    with page.expect_navigation(timeout=300_000):
        page.click("form#retrieval-test button[type=submit]", timeout=300_000)
    page.wait_for_selector("#results")
    assert page.locator(".retrieval-column").count() == 3
    return page.locator(".retrieval-column .document").all_inner_texts()


def test_retrieval_test_as_a_reader_and_as_a_board_member(library: Stack, page, watch: Watch) -> None:
    _sign_in(page)
    page.goto("/portal/")
    page.click("text=Handbook")
    page.click("text=Test retrieval as a user")
    page.wait_for_url("**/portal/retrieval-test/?collection=*")

    as_reader = _test_as(page, "reader")
    assert "handbook.pdf" in as_reader and "minutes.pdf" not in as_reader
    assert "BLUEHERON" not in page.inner_text("#results")

    as_member = _test_as(page, "boardmember")
    for kind in ("dense", "lexical", "chat"):
        first = page.locator(f".retrieval-column[data-kind={kind}] .document").first.inner_text()
        assert first == "minutes.pdf", kind
    assert "minutes.pdf" in as_member
    _snapshot(page, "retrieval-test")
    _accessible(page)

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(SIDEWAYS) <= 0
    page.emulate_media(color_scheme="dark")
    _accessible(page)
    _assert_clean(library, watch)


def test_the_model_page_shows_what_the_server_reports(library: Stack, page, watch: Watch) -> None:
    _sign_in(page)
    page.click("nav >> text=Models")
    page.wait_for_url("**/portal/models/")
    assert page.inner_text("code.reported-id") == library.llm.model
    assert library.llm.base_url in page.inner_text("#llm-server")
    llm = page.locator(".model-card[data-kind=llm]")
    assert "Apache-2.0" in llm.locator(".licence").inner_text()
    assert len(llm.locator("code.sha").inner_text()) == 64
    assert page.locator(".model-card[data-kind=embedding] .licence").inner_text().strip() not in ("", "\N{EN DASH}")

    # Record the licence that applies (here: confirming the packaged one); the audit log keeps it.
    llm.locator("summary").click()
    llm.locator("input[name=source]").fill("HuggingFaceTB/SmolLM2-135M-Instruct, checked by the admin")
    llm.locator("button[type=submit]").click()
    page.wait_for_selector(".messages li")
    assert "checked by the admin" in page.inner_text(".model-card[data-kind=llm]")
    _snapshot(page, "model-page")
    _accessible(page)

    page.goto("/portal/audit/?action=model.recorded")
    assert "model.recorded" in page.inner_text("table.audit")

    page.goto("/portal/models/")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(SIDEWAYS) <= 0
    page.emulate_media(color_scheme="dark")
    _accessible(page)
    _assert_clean(library, watch)
