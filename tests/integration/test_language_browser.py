"""The interface in German, in a real browser (Debian's Chromium through Playwright).

A user signs in, chooses German on the settings page, and the chat page speaks German:
the server-rendered labels and the texts the page script writes itself (through the
JavaScript catalog, loaded as a file under the same Content-Security-Policy).

No model server answers here: the question is answered "nothing found" or with the
model server's error, both of which must arrive in German.
"""

from __future__ import annotations

import pytest

from tests.conftest import LLMServer
from tests.integration import test_browser as browser
from tests.integration.conftest import Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["unreachable_llm"], indirect=True)]
watch = browser.watch
page = browser.page


@pytest.fixture(scope="module")
def unreachable_llm() -> LLMServer:
    return LLMServer(kind="none", base_url=f"http://127.0.0.1:{free_port()}/v1", model="none")


@pytest.fixture(scope="module")
def handbook(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    note = tmp_path_factory.mktemp("handbuch") / "kantine.txt"
    note.write_text("Die Kantine öffnet werktags um 8 Uhr und schließt um 15 Uhr.\n", encoding="utf-8")
    result = stack.manage("ingest", "--collection", "Handbuch", "--inline", str(note))
    assert result.returncode == 0, result.stderr
    return stack


def test_a_user_switches_to_german_and_the_chat_speaks_german(handbook: Stack, page, watch: Watch) -> None:
    _sign_in(page)
    assert page.get_attribute("html", "lang") == "en"
    page.click("header nav >> text=Settings")
    page.select_option("select[name=language]", "de")
    page.click("#language-form button[type=submit]")
    page.wait_for_selector("text=Einstellungen gespeichert.")
    assert page.get_attribute("html", "lang") == "de"

    page.goto("/")
    assert page.locator("header nav").inner_text().count("Sammlungen") == 1
    page.select_option("select[name=collection]", label="Handbuch")
    page.click("text=Neues Gespräch")
    page.wait_for_url("**/chat/*/")
    assert page.locator("button.send").inner_text() == "Senden"
    assert page.locator("label[for=question]").inner_text().startswith("Ihre Frage")

    page.fill("textarea[name=question]", "Wann gibt es Frühstück?")
    page.press("textarea[name=question]", "Enter")
    page.wait_for_selector("article.msg.assistant.streaming", state="detached", timeout=120_000)
    answer = page.locator("article.msg.assistant").last.inner_text()
    # Either nothing passed the relevance floor, or a passage did and the (absent)
    # model server was asked: both told in German, by the server and by the script.
    nothing = "Ich habe in den Dokumenten dieser Sammlung nichts dazu gefunden." in answer and "Kopieren" in answer
    unreachable = "ist nicht erreichbar" in answer and "Erneut versuchen" in answer
    assert nothing or unreachable, answer
    assert "Bearbeiten und erneut senden" in page.locator("article.msg.user").last.inner_text()
    _snapshot(page, "chat-german")
    # The longer German labels still fit a phone: no page scrolls sideways at 390 px.
    conversation = page.url
    page.set_viewport_size({"width": 390, "height": 844})
    for url in (conversation, "/", "/account/settings/", "/account/tokens/"):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url
    _assert_clean(handbook, watch)
