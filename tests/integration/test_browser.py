"""A real browser (Debian's Chromium, driven by Playwright) through the whole first
session: sign in, create a collection, upload, watch the status turn ready, ask,
and see the answer stream in with numbered citations. It also records every
request the page makes: none may leave the product.

Every page runs under the product's Content-Security-Policy (no inline script or
style, nothing from outside): the browser reports each violation, and the tests
see every report, so a page that only works by breaking the policy fails here."""

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


class Watch:
    """What the browser reported while the tests drove it."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.console_errors: list[str] = []
        self.csp_violations: list[str] = []
        self.policies: dict[str, str] = {}
        self.failed: list[str] = []  # responses of 400 and above, to explain a console error


# Added to every document before its own scripts: each violation of the policy
# is sent to the test, whichever page or frame it happens in.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} on ${e.documentURI}`);
});
"""


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(stack: Stack, watch: Watch) -> Iterator:
    chromium = shutil.which("chromium")
    _require(chromium is not None, "Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=stack.base_url, viewport={"width": 1200, "height": 900})
        context.expose_function("reportCspViolation", lambda text: watch.csp_violations.append(text))
        context.add_init_script(REPORT_VIOLATIONS)
        page = context.new_page()
        page.on("request", lambda request: watch.requested.append(request.url))

        def on_console(message) -> None:
            if message.type == "error":
                watch.console_errors.append(f"{message.text} ({message.location.get('url')})")

        page.on("console", on_console)

        def on_response(response) -> None:
            if response.status >= 400:
                watch.failed.append(f"{response.status} {response.url}")
            if response.request.resource_type == "document":
                watch.policies[response.url] = response.headers.get("content-security-policy", "")

        page.on("response", on_response)
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


def _sign_in(page) -> None:
    page.goto("/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def _assert_clean(stack: Stack, watch: Watch) -> None:
    """No policy violation, no script error, nothing outside, the policy on every page."""
    assert watch.csp_violations == []
    assert watch.console_errors == [], watch.failed
    outside = [url for url in watch.requested if not url.startswith(stack.base_url)]
    assert outside == [], outside
    assert watch.policies
    for url, policy in watch.policies.items():
        assert "script-src 'self'" in policy and "unsafe" not in policy, url


@pytest.mark.embedded
def test_first_session_in_a_real_browser(stack: Stack, page, watch: Watch, tmp_path: Path) -> None:
    _sign_in(page)

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

    _assert_clean(stack, watch)


def test_audit_log_api_docs_and_admin_work_under_the_policy(stack: Stack, page, watch: Watch) -> None:
    _sign_in(page)

    page.goto("/portal/audit/")
    page.wait_for_selector("table.audit")
    assert "user.login" in page.inner_text("table.audit")  # the sign-in just made
    page.select_option("select[name=action]", "user.login")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/portal/audit/?*action=user.login*")
    assert page.locator("table.audit tbody tr").count() >= 1

    # Swagger UI: the bundle and its init script are files; the spec is fetched and
    # every operation drawn.
    page.goto("/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Document assistant API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() > 10
    assert any(url.endswith("/api/v1/openapi.json") for url in watch.requested)
    # Try one request from the page: connect-src 'self' lets it through to the API
    # (as the signed-in session).
    listing = page.locator(".opblock-get:has(.opblock-summary-path[data-path='/api/v1/collections'])")
    listing.locator(".opblock-summary").click()
    listing.locator("button.try-out__btn").click()
    listing.locator("button.execute").click()
    status = listing.locator(".live-responses-table tbody .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    # A token typed into Authorize stays in memory, never in the page's storage.
    page.click("button.authorize")
    page.locator(".auth-container input").first.fill("not-a-real-token")
    page.locator(".auth-container button.authorize").first.click()
    assert "not-a-real-token" not in page.evaluate("JSON.stringify(window.localStorage)")
    page.locator(".auth-container button.btn-done").first.click()

    # The Django admin: its index, a change list with filters and a change form.
    page.goto("/admin/")
    page.wait_for_selector("#content-main")
    page.goto("/admin/auth/user/")
    page.wait_for_selector("#result_list")
    page.locator("#result_list tbody th a").first.click()
    page.wait_for_selector("#user_form")
    # The admin's scripts ran: they turn the permission list into a two-box chooser.
    page.wait_for_selector("#id_user_permissions_from")
    page.click("text=History")
    page.wait_for_selector("#content")

    _assert_clean(stack, watch)
    assert any("/api/v1/docs" in url for url in watch.policies)
