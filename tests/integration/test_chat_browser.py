"""The chat page in a real browser (Debian's Chromium through Playwright), on a whole
running product: answers stream and can be stopped and regenerated, a citation opens
its source at the right page of the original, a chat can be held with one document,
Markdown planted in a document stays inert, and the page passes accessibility checks
(labels, visible focus, WCAG AA contrast computed from the styles) at desktop and
phone width, light and dark.

The LLM server is scripted (a real HTTP server on loopback speaking the OpenAI
stream): it thinks first (``<think>``), answers with Markdown, quotes a source that
carries a planted payload, and streams slowly when asked, so stopping is tested
however fast the machine is. ``test_browser.py`` covers the real local model.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import LLMServer
from tests.integration import test_browser as browser
from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["scripted_llm"], indirect=True)]
# The same browser, launch flags and watch as test_browser.py.
watch = browser.watch
page = browser.page

PLANTED_HOST = "attacker.invalid"
PLANTED = (  # one paragraph: one passage, quoted whole by the scripted model
    "The tracker note says expenses are filed monthly. "
    f'![pixel](http://{PLANTED_HOST}/pixel.png) <img src="http://{PLANTED_HOST}/img.png"> '
    f"<script>window.pwned = true; fetch('http://{PLANTED_HOST}/script')</script>\n"
)
OUTSIDER_PASSWORD = "outsider-" + ADMIN_PASSWORD
_SOURCE = re.compile(r'<source id="(\d+)" document="([^"]*)"[^>]*>\n(.*?)\n</source>', re.DOTALL)


class _Scripted(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, pieces: list[str], *, delay: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for piece in pieces:
                chunk = {"model": "scripted-reasoner", "choices": [{"delta": {"content": piece}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the asker stopped the answer

    def do_GET(self) -> None:
        body = json.dumps({"data": [{"id": "scripted-reasoner"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = request["messages"][-1]["content"]
        if "Rewritten question:" in prompt:
            last = re.search(r"Last question: (.*)", prompt)
            self._send([last.group(1) if last else ""], delay=0)
            return
        question = prompt.rsplit("Question:", 1)[-1]
        if "slowly" in question:
            self._send([f"word{i} " for i in range(300)], delay=0.2)
            return
        sources = _SOURCE.findall(prompt)
        answer = "<think>Source 1 looks right.</think>"
        answer += "The meal allowance abroad is **85 euros** per day [1].\n\n"
        answer += "| item | limit |\n|---|---|\n| meals | 85 euros [1] |\n"
        for n, _document, text in sources:
            if "tracker" in text.lower():  # a model repeating what a document says
                answer = f"<think>Quoting source {n}.</think>As the note says [{n}]:\n\n{text}\n"
        self._send(re.findall(r".{1,12}", answer, re.DOTALL), delay=0.02)


@pytest.fixture(scope="module")
def scripted_llm() -> Iterator[LLMServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield LLMServer(
            kind="scripted", base_url=f"http://127.0.0.1:{server.server_port}/v1", model="scripted-reasoner"
        )
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def library(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    folder = tmp_path_factory.mktemp("library")
    (folder / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (folder / "tracker-note.txt").write_text(PLANTED)
    (folder / "minutes.pdf").write_bytes(make_pdf(["Board minutes: the merger with Contoso closes in March."]))
    for args in (
        ["user", "add", "boardmember", "--group", "board"],
        [
            "ingest",
            "--collection",
            "Handbook",
            "--inline",
            str(folder / "handbook.pdf"),
            str(folder / "tracker-note.txt"),
        ],
        ["ingest", "--collection", "Handbook", "--inline", "--restrict-to-group", "board", str(folder / "minutes.pdf")],
        ["user", "add", "outsider", "--password", OUTSIDER_PASSWORD],
        ["collection", "grant", "Handbook", "--user", "outsider", "--role", "read"],
    ):
        result = stack.manage(*args)
        assert result.returncode == 0, result.stderr
    return stack


# Every control has a name a screen reader can say.
UNLABELLED = """() => [...document.querySelectorAll(
    'button, input:not([type=hidden]), select, textarea, a[href], summary')]
  .filter((e) => e.offsetParent !== null)
  .filter((e) => {
    const named = e.getAttribute('aria-label') || (e.labels && [...e.labels].some((l) => l.textContent.trim()))
      || e.textContent.trim() || e.getAttribute('title');
    return !named;
  }).map((e) => e.outerHTML.slice(0, 120))"""

# WCAG AA: 4.5:1 for text, 3:1 for large text, from the computed colours against the
# first opaque background behind each element.
LOW_CONTRAST = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (e) => {
    for (let n = e; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const e of document.querySelectorAll('body *')) {
    if (e.offsetParent === null || e.disabled) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const style = getComputedStyle(e);
    const fg = rgb(style.color), bg = background(e);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      bad.push(`${e.tagName}.${e.className} ${ratio.toFixed(2)}: ${e.textContent.trim().slice(0, 40)}`);
    }
  }
  return bad;
}"""

FOCUS_VISIBLE = """() => {
  const e = document.activeElement, s = getComputedStyle(e);
  return [e.tagName + '.' + e.className, s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2];
}"""


def _accessible(page) -> None:
    assert page.evaluate(UNLABELLED) == []
    assert page.evaluate(LOW_CONTRAST) == []
    page.locator("body").focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        name, visible = page.evaluate(FOCUS_VISIBLE)
        if name.startswith("BODY"):
            continue
        assert visible, f"no visible focus on {name}"


def _open_conversation(page, collection: str = "Handbook") -> None:
    page.goto("/")
    page.select_option("select[name=collection]", label=collection)
    page.click("text=New conversation")
    page.wait_for_url("**/chat/*/")


def _ask(page, question: str) -> None:
    page.fill("textarea[name=question]", question)
    page.press("textarea[name=question]", "Enter")  # Enter sends
    page.wait_for_selector("article.msg.assistant.streaming")


def _answered(page):
    page.wait_for_selector("article.msg.assistant.streaming", state="detached", timeout=120_000)
    return page.locator("article.msg.assistant").last


def test_ask_stop_regenerate_and_open_a_source_at_its_page(library: Stack, page, watch: Watch, tmp_path: Path) -> None:
    _sign_in(page)
    _open_conversation(page)
    # Shift+Enter adds a line instead of sending.
    page.fill("textarea[name=question]", "first line")
    page.press("textarea[name=question]", "Shift+Enter")
    assert page.input_value("textarea[name=question]") == "first line\n"
    assert not page.locator("article.msg").count()

    _ask(page, "What is the daily meal allowance abroad?")
    answer = _answered(page)
    body = answer.locator(".body")
    assert (
        body.locator("table th").count() == 2
        and body.locator("table td").count() == 2
        and body.locator("strong").inner_text() == "85 euros"
    )
    assert "Source 1 looks right" not in body.inner_text()  # the thinking is not the answer...
    reasoning = answer.locator("details.reasoning")
    assert not reasoning.get_attribute("open") and "Source 1 looks right" in (
        reasoning.text_content() or ""
    )  # ...only folded
    chips = body.locator("a.cite")
    assert chips.count() == 2 and chips.first.inner_text() == "1"
    assert "Answered by scripted-reasoner" in answer.inner_text()
    _snapshot(page, "chat")

    # A citation opens the source panel: the passage, its page, "open original" at that page.
    chips.first.click()
    panel = page.locator("#source-panel")
    panel.locator("a.original").wait_for()
    assert "handbook.pdf" in panel.inner_text() and "page 2" in panel.inner_text()
    assert panel.locator("mark.cited").count() >= 1
    original = panel.locator("a.original").get_attribute("href")
    assert original and original.endswith("#page=2")
    _snapshot(page, "source-panel")
    served = page.request.get(original.split("#")[0])
    assert served.status == 200 and served.headers["content-type"] == "application/pdf"
    assert served.body().startswith(b"%PDF")
    page.keyboard.press("Escape")
    assert panel.is_hidden()

    # Stop one: the stream ends where it was, the question can be asked again.
    _ask(page, "What is the daily meal allowance abroad? Answer slowly.")
    page.wait_for_function(
        "() => (document.querySelector('article.msg.assistant.streaming .body')?.textContent.length ?? 0) > 10"
    )
    # (The button is not "stable" for Playwright while tokens keep moving the page.)
    page.locator("button.stop").dispatch_event("click")
    stopped = _answered(page)
    assert stopped.locator(".stopped").is_visible(), stopped.inner_text()
    assert stopped.locator("button.retry").is_visible()
    assert page.locator("button.stop").is_hidden()

    # Regenerate one: the last question is answered again, not added again.
    _ask(page, "What is the daily meal allowance abroad?")
    _answered(page)
    questions = page.locator("article.msg.user").count()
    page.locator("article.msg.assistant").last.locator("button.regenerate").click()
    page.wait_for_selector("article.msg.assistant.streaming")
    regenerated = _answered(page)
    assert page.locator("article.msg.user").count() == questions
    assert regenerated.locator("a.cite").count() == 2
    page.reload()
    assert page.locator("article.msg.user").count() == questions  # as stored

    _accessible(page)
    _assert_clean(library, watch)


def test_planted_markdown_is_inert_and_a_document_chat_stays_on_its_document(
    library: Stack, page, watch: Watch
) -> None:
    _sign_in(page)
    _open_conversation(page)
    _ask(page, "What does the tracker note say about expenses?")
    answer = _answered(page)
    text = answer.locator(".body").inner_text()
    assert "pixel.png" in text and "<script>" in text  # shown as text...
    assert page.locator("#thread img, #thread script").count() == 0  # ...never as markup
    assert page.evaluate("window.pwned === undefined")
    answer.locator("a.cite").first.click()
    page.locator("#source-panel a.original").wait_for()
    assert page.locator("#source-panel img").count() == 0
    assert "tracker-note.txt" in page.inner_text("#source-panel")

    # Chat with this document, from the source panel: only it is searched.
    page.click("#source-panel button:has-text('Chat with this document')")
    page.wait_for_url("**/chat/*/")
    assert "only tracker-note.txt is searched" in page.inner_text(".chat-head")
    _ask(page, "What is the daily meal allowance abroad?")
    scoped = _answered(page)
    documents = {t.split(",")[0] for t in scoped.locator("ol.citations a.source-link").all_inner_texts()}
    assert documents <= {"tracker-note.txt"}

    # The conversation list: newest first, grouped by day, searchable.
    sidebar = page.locator("#sidebar")
    assert sidebar.locator("h2.day").first.inner_text().lower() == "today"
    assert sidebar.locator("a[aria-current=page]").count() == 1
    shot = _shot_path("conversation-list")
    if shot:
        sidebar.screenshot(path=str(shot))

    # Phone width: no page scrolls sideways; dark mode keeps the checks.
    conversation_url = page.url
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/", "/portal/", conversation_url):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url
    _snapshot(page, "phone")
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 1200, "height": 900})
    _accessible(page)
    _snapshot(page, "dark")

    assert not [url for url in watch.requested if PLANTED_HOST in url]
    _assert_clean(library, watch)


def test_the_original_is_refused_to_a_reader_who_may_not_see_it(library: Stack) -> None:
    session = library.client()
    session.login("admin", ADMIN_PASSWORD)
    outsider = library.client()
    outsider.login("outsider", OUTSIDER_PASSWORD)
    ids = {}
    for name in ("handbook.pdf", "minutes.pdf"):
        result = library.manage(
            "shell", "-c", f"from ingest.models import Document; print(Document.objects.get(name='{name}').pk)"
        )
        ids[name] = int(result.stdout.strip().splitlines()[-1])
    for name, outsider_status in (("handbook.pdf", 200), ("minutes.pdf", 404)):
        url = f"/chat/documents/{ids[name]}/original"
        assert session.http.get(url).status_code == 200
        assert outsider.http.get(url).status_code == outsider_status, name
    anonymous = library.client().http.get(f"/chat/documents/{ids['handbook.pdf']}/original")
    assert anonymous.status_code == 302  # to the sign-in page


def _shot_path(name: str) -> Path | None:
    import os

    folder = os.environ.get("ASSISTANT_SCREENSHOT_DIR")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"{name}.png"
