"""An administrator runs access from the portal in a real browser (Debian's Chromium
through Playwright), and an employee's view follows: a group is made, the employee put
in it, the group granted read on a collection, a document restricted to another group;
the employee then reads the collection without that document (not listed, not counted,
not found by a question, its original refused) until they are added to its group.

Destructive actions ask first: Revoke opens a confirmation dialog, and Cancel leaves
the grant in place. The pages pass the same accessibility checks as the chat
(labels, visible focus, WCAG AA contrast) and do not scroll sideways at 390 px.
"""

from __future__ import annotations

import pytest

from tests.integration import test_browser as browser
from tests.integration.conftest import ADMIN_PASSWORD, Stack
from tests.integration.test_browser import Watch, _assert_clean, _sign_in, _snapshot
from tests.integration.test_chat_browser import UNLABELLED, _accessible, scripted_llm  # noqa: F401  (a fixture)
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.live, pytest.mark.parametrize("stack", ["scripted_llm"], indirect=True)]
watch = browser.watch
page = browser.page

EMPLOYEE_PASSWORD = "employee-" + ADMIN_PASSWORD
QUESTION = "When does the merger with Contoso close?"


@pytest.fixture(scope="module")
def library(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A collection nobody but the admin reads yet; an employee; a "board" group without them."""
    folder = tmp_path_factory.mktemp("library")
    (folder / "handbook.pdf").write_bytes(make_pdf(HANDBOOK_PAGES))
    (folder / "minutes.pdf").write_bytes(make_pdf(["Board minutes: the merger with Contoso closes in March."]))
    for args in (
        ["user", "add", "boardmember", "--group", "board"],
        ["user", "add", "erin", "--password", EMPLOYEE_PASSWORD],
        ["user", "add", "outsider"],
        ["ingest", "--collection", "Handbook", "--inline", str(folder / "handbook.pdf"), str(folder / "minutes.pdf")],
    ):
        result = stack.manage(*args)
        assert result.returncode == 0, result.stderr
    return stack


def _employee_view(stack: Stack, collection_id: int) -> tuple[str, list[str], int]:
    """What the employee sees: their portal home, the documents a question finds, the minutes' original."""
    session = stack.client()
    assert session.login("erin", EMPLOYEE_PASSWORD).status_code == 302
    home = session.http.get("/portal/").text
    conversation = session.post("/chat/new", {"collection": collection_id})
    assert conversation.status_code == 302, conversation.text[:500]
    events = session.ask(conversation.headers["location"], QUESTION)
    found = [c["document"] for e in events if e["event"] == "sources" for c in e["citations"]]
    minutes_id = stack.manage(
        "shell", "-c", "from ingest.models import Document; print(Document.objects.get(name='minutes.pdf').pk)"
    ).stdout.split()[-1]
    original = session.http.get(f"/chat/documents/{minutes_id}/original").status_code
    return home, found, original


def test_an_admin_gives_access_and_the_employee_view_follows(library: Stack, page, watch: Watch) -> None:
    _sign_in(page)

    # A group, from the People pages, with the employee in it.
    page.click("nav >> text=People")
    page.wait_for_url("**/portal/people/")
    page.click(".tabs >> text=Groups")
    page.fill("input[name=name]", "staff")
    page.click("text=Create group")
    page.wait_for_url("**/portal/people/groups/*/")
    page.fill("#members input[name=username]", "erin")
    page.click("text=Add member")
    page.wait_for_selector("#members li:has-text('erin')")

    # The group reads the collection; the minutes are restricted to the board.
    page.goto("/portal/")
    page.click("table >> text=Handbook")
    page.wait_for_url("**/portal/collections/*/")
    collection_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    page.select_option("#grant-group select[name=group]", label="staff")
    page.select_option("#grant-group select[name=role]", value="read")
    page.click("#grant-group button[type=submit]")
    page.wait_for_selector("#access tr:has-text('group staff')")
    page.select_option("#restrict select[name=document]", label="minutes.pdf")
    page.select_option("#restrict select[name=groups]", label="board")
    page.click("#restrict button[type=submit]")
    page.wait_for_selector("tr:has-text('minutes.pdf') >> text=board")

    # Revoke asks first; Cancel keeps the grant, Confirm takes it away.
    page.fill("#grant-user input[name=username]", "outsider")
    page.click("#grant-user button[type=submit]")
    outsider_row = page.locator("#access tr:has-text('user outsider')")
    outsider_row.wait_for()
    outsider_row.locator("button:has-text('Revoke')").click()
    dialog = page.locator("#confirm-dialog")
    dialog.wait_for(state="visible")
    assert "outsider" in dialog.inner_text()
    dialog.locator("button[value=cancel]").click()
    assert dialog.is_hidden() and outsider_row.count() == 1
    page.reload()
    assert page.locator("#access tr:has-text('user outsider')").count() == 1
    page.locator("#access tr:has-text('user outsider') button:has-text('Revoke')").click()
    dialog.locator("button[value=ok]").click()
    page.wait_for_selector("#access tr:has-text('user outsider')", state="detached")
    assert page.locator("#access tr:has-text('group staff')").count() == 1
    _snapshot(page, "portal-collection")
    # The upload form above is another part's; the header and Access controls are named.
    for section in ("#edit", "#access"):
        scoped = UNLABELLED.replace(
            "document.querySelectorAll(", f"document.querySelector('{section}').querySelectorAll("
        )
        assert page.evaluate(scoped) == [], section

    # The employee reads the collection, without the minutes anywhere.
    home, found, original = _employee_view(library, collection_id)
    readable = home.split('id="readable"', 1)[1]
    assert "Handbook" in readable and "minutes.pdf" not in home
    assert f'data-collection="{collection_id}"' in readable
    assert '<td class="documents">1' in readable, readable[:800]
    assert "minutes.pdf" not in found and original == 404

    # Her page in People says so: the minutes are restricted away from her.
    page.goto("/portal/people/?q=erin")
    page.click("#users >> text=erin")
    page.wait_for_url("**/portal/people/users/*/")
    reads = page.locator("#reads")
    assert "Handbook" in reads.inner_text() and "minutes.pdf" in reads.locator(".hidden-documents").inner_text()
    _snapshot(page, "portal-people")
    _accessible(page)

    # On the board, she reads and finds them.
    page.select_option("#groups select[name=group]", label="board")
    page.click("text=Add to group")
    page.wait_for_selector("#groups li:has-text('board')")
    assert "minutes.pdf" not in page.locator("#reads .hidden-documents").inner_text()
    home, found, original = _employee_view(library, collection_id)
    assert '<td class="documents">2' in home.split('id="readable"', 1)[1]
    assert "minutes.pdf" in found and original == 200

    # Phone width: the People pages do not scroll sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/portal/people/", "/portal/people/groups/", page.url):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url

    _assert_clean(library, watch)
