"""A real browser (Debian's Chromium, driven by Playwright) through the whole first
session: sign in, create a collection, upload, watch the status turn ready, ask,
and see the answer stream in with numbered citations. It also records every
request the page makes: none may leave the product."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _require
from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.live

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run",
]  # fmt: skip


@pytest.fixture
def page(stack: Stack) -> Iterator:
    chromium = shutil.which("chromium")
    _require(chromium is not None, "Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=stack.base_url, viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


def _snapshot(page, name: str) -> None:
    folder = os.environ.get("ASSISTANT_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_first_session_in_a_real_browser(stack: Stack, page, tmp_path: Path) -> None:
    requested: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    def on_console(message) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    page.on("console", on_console)

    page.goto("/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")

    page.goto("/portal/")
    page.fill("input[name=name]", "Browser handbook")
    page.click("text=Create collection")
    page.wait_for_url("**/portal/collections/*/")

    handbook = tmp_path / "handbook.pdf"
    handbook.write_bytes(make_pdf(HANDBOOK_PAGES))
    page.set_input_files("input[name=files]", str(handbook))
    page.click("form[enctype] button[type=submit]")
    # The page polls the status endpoint and updates the row in place until ready.
    page.wait_for_selector("tr:has-text('handbook.pdf') span.status.ready", timeout=180_000)
    assert page.inner_text("tr:has-text('handbook.pdf') td:nth-child(4)") == "3"
    _snapshot(page, "portal-collection")

    page.goto("/")
    page.select_option("select[name=collection]", label="Browser handbook")
    page.click("text=New conversation")
    page.wait_for_url("**/chat/*/")
    page.fill("textarea[name=question]", "What is the daily meal allowance for international travel?")
    page.click("form#ask button[type=submit]")
    page.wait_for_selector("article.msg.assistant.streaming")  # tokens are arriving
    page.wait_for_selector("article.msg.assistant:not(.streaming)", timeout=180_000)

    answer = page.locator("article.msg.assistant").last
    assert answer.locator(".body").inner_text().strip()
    first_source = answer.locator("ol.citations li").first.inner_text()
    assert "handbook.pdf" in first_source and "page 2" in first_source
    assert f"Answered by {stack.llm.model}" in answer.inner_text()
    assert not answer.locator(".error").count()
    _snapshot(page, "chat-answer")

    # After a reload the stored answer shows the same citations.
    page.reload()
    stored = page.locator("article.msg.assistant").last
    assert "page 2" in stored.locator("ol.citations li").first.inner_text()

    assert console_errors == []
    outside = [url for url in requested if not url.startswith(stack.base_url)]
    assert outside == [], outside
