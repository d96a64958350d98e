"""The dashboard in a real browser (Debian's Chromium through Playwright), on a whole
running product: questions asked through the chat and a rating given show up in its
charts, a failed upload in its failures, and the page passes the accessibility checks
(labels, visible focus, WCAG AA contrast) light and dark, at phone width too.

The same scripted LLM and library as ``test_chat_browser.py`` (their fixtures are
imported, the stack is this module's own).
"""

from __future__ import annotations

import pytest

from tests.integration import test_browser as browser
from tests.integration import test_chat_browser as chat_browser
from tests.integration.conftest import Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.integration.test_chat_browser import _accessible, _answered, _ask, _open_conversation

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["scripted_llm"], indirect=True)]
# The same browser, watch, scripted model and library as test_chat_browser.py.
watch = browser.watch
page = browser.page
scripted_llm = chat_browser.scripted_llm
library = chat_browser.library

CHARTS = ("questions", "first-token", "total-time", "feedback", "ingested", "pages-per-minute")


def test_the_dashboard_charts_what_happened(library: Stack, page, watch: Watch, tmp_path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a PDF")
    library.manage("ingest", "--collection", "Handbook", "--inline", str(broken))  # fails, as it should

    _sign_in(page)
    _open_conversation(page)
    for question in ("What is the daily meal allowance abroad?", "What is the meal allowance for trips abroad?"):
        _ask(page, question)
        _answered(page)
    page.locator("article.msg.assistant").last.locator("form.feedback button[value='1']").click()
    page.locator("article.msg.assistant").last.locator("form.feedback .status:has-text('Thanks')").wait_for()

    page.click("nav a:has-text('Dashboard')")
    page.wait_for_url("**/portal/dashboard/")
    for chart in CHARTS:
        svg = page.locator(f"svg[aria-labelledby='{chart}-title {chart}-desc']")
        assert svg.count() == 1 and svg.bounding_box()["height"] > 20, chart
    assert page.locator("svg.chart").first.locator("rect.bar").count() >= 1  # today's questions
    assert page.locator("svg[aria-labelledby^='first-token'] circle.dot").count() == 2  # p50 and p95, today
    assert page.locator(".tile:has-text('questions') .figure").first.inner_text() == "2"
    assert page.locator(".tile:has-text('rated helpful') .figure").inner_text() == "100%"
    assert "broken.pdf" in page.locator("table.failed").inner_text()
    assert "Handbook" in page.locator("table.indexes").inner_text()

    # The numbers behind each picture, for whoever reads rather than looks.
    page.locator("details.numbers summary").first.click()
    assert page.locator("details.numbers table").first.is_visible()
    _accessible(page)
    page.locator("details.numbers summary").first.click()
    _snapshot(page, "dashboard")

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1200, "height": 900})
    _accessible(page)
    _assert_clean(library, watch)
