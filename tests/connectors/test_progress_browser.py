"""The collection page's connector counts follow a running sync in a real browser (Debian's Chromium).

The run's progress is written to the connector's row as a sync writes it; the page,
loaded once, must show the new counts without being reloaded, and make no request
outside the product.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.connectors.models import Connector
from tests.conftest import _require
from tests.connectors.conftest import folder_connector
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.once]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture
def browser_page(live_server, monkeypatch) -> Iterator:
    chromium = shutil.which("chromium")
    _require(chromium is not None, "Debian's chromium is not installed (make test installs it)")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # are still plain blocking calls, made between the browser's steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server.url)
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        yield page, requested
        browser.close()


def test_the_counts_follow_a_running_sync_without_a_reload(browser_page, live_server, collection, source: Path):
    manager = UserFactory.create()
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    connector = folder_connector(collection, source)
    Connector.objects.filter(pk=connector.pk).update(state=Connector.State.RUNNING, seen=1, fetched=0, failed=0)

    page, requested = browser_page
    signed_in = Client()
    signed_in.force_login(manager)
    session = signed_in.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
    page.goto(f"/portal/collections/{collection.pk}/")
    row = page.locator(f'tr[data-connector="{connector.pk}"]')
    assert row.locator('[data-field="seen"]').text_content() == "1"

    Connector.objects.filter(pk=connector.pk).update(seen=12, fetched=5, failed=2, cursor="reports/q3.pdf")
    # The page polls every 2 s while a connector runs; waiting is bounded, not timed.
    page.wait_for_function(
        "id => document.querySelector(`tr[data-connector='${id}'] [data-field=seen]`).textContent === '12'",
        arg=connector.pk, timeout=60_000,
    )  # fmt: skip
    assert row.locator('[data-field="fetched"]').text_content() == "5"
    assert row.locator('[data-field="failed"]').text_content() == "2"
    assert row.locator('[data-field="cursor"]').text_content() == "reports/q3.pdf"
    assert requested and all(url.startswith(live_server.url) for url in requested)
