"""A web connector against a real intranet on loopback: what it reads, what it never asks for, what it keeps."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat_services
from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.secrets import new_key
from assistant.connectors.sources.html_main import page_read
from assistant.connectors.sources.http import USER_AGENT
from ingest.models import Chunk, Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers, assert_cites, assert_never_cites, citations
from tests.connectors.conftest import actions, assert_same_as_control, killed_after, resumed, run
from tests.connectors.intranet import BOILERPLATE, COOKIE_TEXT, Server, Site, intranet, page
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def offsite() -> Iterator[Server]:
    server = Server(Site())
    yield server
    server.close()


@pytest.fixture
def site(offsite: Server) -> Iterator[Server]:
    server = Server(Site())
    intranet(server.site, offsite.url)
    yield server
    server.close()


def web_connector(collection, server: Server, name: str = "intranet", **settings) -> Connector:
    settings.setdefault("start_urls", [server.url + "/"])
    settings.setdefault("groups", [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}])
    return services.connector_add(collection=collection, kind="web", name=name, settings=settings)


def sync_only(connector: Connector):
    """A sync without ingesting what it brings (for tests about what is listed and requested)."""
    return sync.connector_sync(connector=connector, enqueue=False)


def page_paths(requests: list[tuple[str, str, int]]) -> set[str]:
    return {path for _, path, _ in requests}


def test_a_site_is_crawled_politely_and_only_what_changed_is_fetched_again(collection, site, offsite) -> None:
    connector = web_connector(collection, site)
    first = run(connector)
    url = site.url
    assert actions(first) == {
        f"{url}/": "added", f"{url}/handbook/holidays.html": "added", f"{url}/handbook/travel.html": "added",
        f"{url}/news/roadmap.html": "added", f"{url}/hr/bonus.html": "added", f"{url}/imprint.html": "added",
        f"{url}/people/": "added", f"{url}/people/?page=2": "added", f"{url}/files/memo.pdf": "added",
    }  # fmt: skip
    requested = site.site.take_requests()
    # robots.txt forbids /private/: never asked for. The partner site is never asked for anything.
    assert not [p for p in page_paths(requested) if p.startswith("/private/")]
    assert offsite.site.requests == []
    assert site.site.agents == {USER_AGENT}
    assert set(Document.objects.filter(collection=collection).values_list("status", flat=True)) == {"ready"}

    # The frame (header, navigation, cookie banner, footer) is in no stored passage; the page's text is.
    texts = " ".join(Chunk.objects.filter(document__collection=collection).values_list("text", flat=True))
    assert "thirty days of paid holiday" in texts and "Rotterdam" in texts
    for words in BOILERPLATE:
        assert words not in texts, words
    holidays = Document.objects.get(collection=collection, name="holidays.html")
    assert selectors.source_link(document_id=holidays.pk) == f"{url}/handbook/holidays.html"

    # Nothing changed: every item is asked for conditionally and answers 304; no page body travels.
    second = run(connector)
    assert set(actions(second).values()) == {"unchanged"} and len(actions(second)) == 9
    assert second.fetched == 0 and second.bytes_read == 0
    requested = site.site.take_requests()
    assert {status for _, path, status in requested if path != "/robots.txt"} == {304}

    # An edited page is a new version; a removed one goes; the rest is not fetched.
    site.site.put("/handbook/holidays.html", page("Holiday policy", (
        "<p>Every employee now has thirty-two days of paid holiday, including the quokka day.</p>"
        '<p>The signed <a href="/files/memo.pdf">memo</a> explains the carry-over rules.</p>')))  # fmt: skip
    site.site.remove("/handbook/travel.html")
    third = run(connector)
    changed = {sid: a for sid, a in actions(third).items() if a != "unchanged"}
    assert changed == {f"{url}/handbook/holidays.html": "updated", f"{url}/handbook/travel.html": "deleted"}
    fetched_again = [(p, s) for _, p, s in site.site.take_requests() if s == 200]
    assert fetched_again == [("/robots.txt", 200), ("/handbook/holidays.html", 200)]
    assert not Document.objects.filter(collection=collection, name="travel.html").exists()

    # A question right after the sync finds the new text, cited from the page's URL.
    passages = chat_services.passages_retrieve(user=None, collection=collection, query="quokka day holiday", k=3)
    assert passages and passages[0].document_name == "holidays.html" and "quokka" in passages[0].text
    assert selectors.source_link(document_id=passages[0].document_id) == f"{url}/handbook/holidays.html"
    assert ConnectorItem.objects.get(source_id=f"{url}/handbook/holidays.html").memo["etag"]


def test_an_answer_right_after_a_sync_cites_the_edited_page_and_keeps_the_restricted_one_from_outsiders(
    collection, site, readers, answering
) -> None:
    url = site.url
    site.site.put("/handbook/parking.html", page("Parking", f"<p>{PARKING.before}</p>"))
    site.site.put("/hr/salaries.html", page("Salaries", f"<p>{SALARIES.before}</p>"))
    connector = web_connector(collection, site, depth=0, start_urls=[
        f"{url}/handbook/parking.html", f"{url}/hr/salaries.html",
    ])  # fmt: skip
    run(connector)
    public, restricted = "parking.html", "salaries.html"
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=False)

    site.site.put("/handbook/parking.html", page("Parking", f"<p>{PARKING.after}</p>"))
    site.site.put("/hr/salaries.html", page("Salaries", f"<p>{SALARIES.after}</p>"))
    assert actions(run(connector)) == {f"{url}/handbook/parking.html": "updated", f"{url}/hr/salaries.html": "updated"}
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=True)


def test_a_page_linked_for_the_first_time_is_added_by_the_next_sync_and_answered_from(
    collection, site, readers, answering
) -> None:
    url = site.url
    site.site.put("/handbook/parking.html", page("Parking", f"<p>{PARKING.after}</p>"))  # published, not linked yet
    connector = web_connector(collection, site)
    assert f"{url}/handbook/parking.html" not in actions(run(connector))
    assert_never_cites(readers["outsider"], collection, PARKING, "parking.html")

    # The holiday page now links it: the next sync reads the holiday page again and follows the new link.
    site.site.put("/handbook/holidays.html", page("Holiday policy", (
        "<p>Every employee has thirty days of paid holiday per calendar year.</p>"
        '<p>The signed <a href="/files/memo.pdf">memo</a> explains the carry-over rules.</p>'
        '<p>Parking during holidays: see the <a href="/handbook/parking.html">parking rules</a>.</p>')))  # fmt: skip
    second = run(connector)
    changed = {sid: a for sid, a in actions(second).items() if a != "unchanged"}
    assert changed == {f"{url}/handbook/holidays.html": "updated", f"{url}/handbook/parking.html": "added"}
    assert_cites(readers["outsider"], collection, PARKING, "parking.html", edited=True)


@pytest.mark.parametrize("how", ["redirect", "relinked"])
def test_a_moved_page_keeps_its_document_and_is_cited_at_its_new_address(
    collection, site, readers, answering, how: str
) -> None:
    """Moved behind a 301 from its old address, or linked at a new one while the old answers 404:
    the same main content at a new URL is a rename, as a moved file is (nothing embedded again)."""
    url, old, new = site.url, "/news/roadmap.html", "/news/2027/roadmap-2027.html"
    connector = web_connector(collection, site)
    run(connector)
    roadmap = Document.objects.get(collection=collection, name="roadmap.html")
    passages = set(roadmap.chunks.values_list("pk", flat=True))

    site.site.put(new, site.site.resources[old].content)
    if how == "redirect":
        site.site.redirect(old, new)
    else:
        site.site.remove(old)
        site.site.put("/", site.site.resources["/"].content.replace(old.encode(), new.encode()))
    second = run(connector)
    changed = {sid: a for sid, a in actions(second).items() if a != "unchanged"}
    assert changed == {f"{url}{new}": "renamed", **({f"{url}/": "updated"} if how == "relinked" else {})}
    roadmap.refresh_from_db()
    assert roadmap.name == "roadmap-2027.html" and set(roadmap.chunks.values_list("pk", flat=True)) == passages
    assert selectors.source_link(document_id=roadmap.pk) == f"{url}{new}"
    assert ConnectorItem.objects.filter(source_id=f"{url}{old}").count() == 0

    # Asked right after: cited under its new name, with its new address as the link to the source.
    found = citations(readers["outsider"], collection, "When does the warehouse in Rotterdam open?")
    first = next(c for c in found if c["cited"])
    assert first["document"] == "roadmap-2027.html" and "Rotterdam" in first["text"], found
    assert first["source_link"] == f"{url}{new}"
    assert "roadmap.html" not in {c["document"] for c in found}


def test_a_restricted_page_is_read_only_by_its_group(collection, site, settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    hr = GroupFactory.create(name="hr")
    outsider, member = UserFactory.create(), UserFactory.create()
    member.groups.add(hr)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
    run(web_connector(collection, site))

    def found(user) -> set[str]:
        passages = chat_services.passages_ranked(user=user, collection=collection, query="annual bonus scheme", k=50)
        return {p.document_name for p in passages}

    assert "bonus.html" in found(member)
    assert "bonus.html" not in found(outsider) and "holidays.html" in found(outsider)


def test_a_sitemap_with_depth_0_reads_its_pages_and_their_documents(collection, site) -> None:
    url = site.url
    site.site.put("/sitemap.xml", (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{url}/handbook/holidays.html</loc></url><url><loc>{url}/news/roadmap.html</loc></url>"
        f"<url><loc>{url}/private/salaries.html</loc></url></urlset>").encode(), "application/xml")  # fmt: skip
    connector = web_connector(collection, site, start_urls=[], sitemap=f"{url}/sitemap.xml", depth=0)
    report = sync_only(connector)
    assert sorted(actions(report)) == [f"{url}/files/memo.pdf", f"{url}/handbook/holidays.html",
                                       f"{url}/news/roadmap.html"]  # fmt: skip
    assert "/private/salaries.html" not in page_paths(site.site.requests)


def test_excluded_paths_and_max_pages_bound_the_crawl(collection, site) -> None:
    connector = web_connector(collection, site, exclude=["people/**", "*.pdf"], max_pages=4)
    report = sync_only(connector)
    assert len(report.items) == 4
    assert not [sid for sid in actions(report) if "/people/" in sid or sid.endswith(".pdf")]
    assert not [p for p in page_paths(site.site.requests) if p.startswith("/people/") or p.endswith(".pdf")]


def test_a_site_behind_a_login_needs_the_credentials(collection, site, settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()
    site.site.login = ("crawler", "s3cret-pass")
    refused = web_connector(collection, site, name="no-login")
    report = sync_only(refused)
    assert "refused the login (401)" in report.error and report.items == []
    connector = services.connector_add(
        collection=collection, kind="web", name="with-login", credentials={"secret": "s3cret-pass"},
        settings={"start_urls": [site.url + "/"], "username": "crawler", "depth": 0},
    )  # fmt: skip
    report = sync_only(connector)
    assert actions(report) == {f"{site.url}/": "added"}


def test_a_removed_start_page_goes_and_a_start_page_that_never_answered_stops_the_sync(collection, site) -> None:
    connector = web_connector(collection, site, depth=0, start_urls=[site.url + "/", site.url + "/imprint.html"])
    sync_only(connector)
    site.site.remove("/")
    report = sync_only(connector)
    assert actions(report) == {f"{site.url}/": "deleted", f"{site.url}/imprint.html": "unchanged"}
    other = web_connector(collection, site, name="missing", start_urls=[site.url + "/nothing-here.html"])
    report = sync_only(other)
    assert "cannot be read" in report.error and report.items == []


def test_the_main_content_is_kept_and_the_frame_dropped() -> None:
    html = page("Canteen", "<p>The canteen serves lunch from noon.</p>", links=[("/a", "A link")])
    found = page_read(html, "http://intranet.example/canteen.html")
    text = found.html.decode()
    assert "serves lunch from noon" in text and found.title == "Canteen - Northwind Intranet"
    for words in (*BOILERPLATE, "A link", "Accept all cookies"):
        assert words not in text
    assert "http://intranet.example/a" in found.links and "http://intranet.example/imprint.html" in found.links
    # Without semantic elements, the block holding the most text is the content.
    plain = b"""<html><body><div class="top">Menu: Home | News</div><div><p>%s</p><p>%s</p></div>
    <div class="cookie-note">%s</div></body></html>""" % (b"Long body text. " * 20, b"More body.", COOKIE_TEXT.encode())
    text = page_read(plain, "http://x/").html.decode()
    assert "Long body text." in text and "Menu: Home" not in text and COOKIE_TEXT not in text
    meta = page_read(
        b'<html><head><meta name="robots" content="noindex, nofollow"></head><body>x</body></html>', "http://x/"
    )
    assert meta.noindex and meta.nofollow


def test_the_command_adds_a_web_connector(collection, site) -> None:
    out = StringIO()
    call_command("connector", "add", "--collection", collection.name, "--type", "web", "--name", "intra",
                 "--url", site.url + "/", "--depth", "1", "--max-pages", "50", "--timeout", "5",
                 "--exclude", "people/**", "--map", "**=*", stdout=out)  # fmt: skip
    connector = Connector.objects.get(name="intra")
    assert connector.settings["start_urls"] == [site.url + "/"] and connector.settings["depth"] == 1
    assert connector.settings["max_pages"] == 50 and connector.settings["timeout_s"] == 5.0
    with pytest.raises(CommandError, match="--url"):
        call_command("connector", "add", "--collection", collection.name, "--type", "web", "--name", "x")


def test_a_busy_site_is_waited_out_and_what_never_answers_fails_with_the_reason(
    collection, site, waits, settings
) -> None:
    settings.CONNECTOR_RETRY_ATTEMPTS = 3
    url = site.url
    site.site.throttle("/robots.txt", status=429, retry_after="4")
    site.site.throttle("/handbook/holidays.html", times=2, status=503, retry_after="1")
    site.site.throttle("/files/memo.pdf", times=100, status=503, retry_after=None, method="GET")
    connector = web_connector(collection, site, depth=1)
    report = sync_only(connector)

    # Throttled and unavailable answers were waited out (recorded, not slept) and asked again.
    assert not report.error and waits[:3] == [4.0, 1.0, 1.0]
    assert actions(report)[f"{url}/handbook/holidays.html"] == "added"
    asked = [(path, status) for _, path, status in site.site.take_requests()]
    assert [s for p, s in asked if p == "/handbook/holidays.html"] == [503, 503, 200]
    # The PDF never answers: it fails alone, after its tries (jittered back-off), with the reason.
    assert actions(report)[f"{url}/files/memo.pdf"] == "failed"
    assert len(waits) == 5 and 0 <= waits[3] <= 1 and 0 <= waits[4] <= 2
    failed = ConnectorItem.objects.get(connector=connector, source_id=f"{url}/files/memo.pdf")
    assert "answered 503; gave up after 3 tries" in failed.error
    connector.refresh_from_db()
    assert connector.last_error.startswith("1 item(s) failed") and connector.state == "idle"

    # A start page that never answers stops the sync with the reason; nothing changes.
    site.site.throttle("/imprint.html", times=100, status=503, retry_after="2")
    other = web_connector(collection, site, name="busy", start_urls=[url + "/imprint.html"])
    report = sync_only(other)
    assert "/imprint.html cannot be read" in report.error and "gave up after 3 tries" in report.error
    assert report.items == []


def test_a_changed_mapping_or_a_page_moved_under_another_path_re_restricts_without_re_embedding(
    collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    server = Server(Site())
    pay = b"<html><body><main><h1>Pay</h1><p>The pay policy of the company: bands A to F.</p></main></body></html>"
    canteen = b"<html><body><main><h1>Canteen</h1><p>The canteen policy of the company: lunch at noon.</p></main>"

    def index(pay_path: str) -> bytes:
        links = f'<a href="{pay_path}">pay policy</a> and the <a href="/public/canteen.html">canteen policy</a>'
        return f"<html><body><main><h1>Home</h1><p>Read the {links} of the company.</p></main></body></html>".encode()

    try:
        server.site.put("/index.html", index("/public/pay.html"))
        server.site.put("/public/pay.html", pay)
        server.site.put("/public/canteen.html", canteen)
        connector = web_connector(collection, server, start_urls=[server.url + "/index.html"], depth=1)
        run(connector)
        assert {"pay.html", "canteen.html"} <= found_names(readers["outsider"], collection)
        document = Document.objects.get(collection=collection, name="pay.html")
        chunks = set(document.chunks.values_list("pk", flat=True))

        # The page moves under hr/, which the mapping gives to hr: the same document, restricted.
        server.site.remove("/public/pay.html")
        server.site.put("/hr/pay.html", pay)
        server.site.put("/index.html", index("/hr/pay.html"))
        report = run(connector)
        assert actions(report)[f"{server.url}/hr/pay.html"] == "renamed"
        assert "pay.html" not in found_names(readers["outsider"], collection)
        assert "pay.html" in found_names(readers["member"], collection)

        # The mapping changes: the canteen page too is for hr only, read and embedded no more.
        services.connector_change(connector=connector, settings={"groups": [{"glob": "**", "groups": ["hr"]}]})
        report = run(connector)
        assert actions(report)[f"{server.url}/public/canteen.html"] == "permissions"
        assert report.fetched == 0 and report.queued == []
        assert found_names(readers["outsider"], collection) == set()
        assert {"pay.html", "canteen.html"} <= found_names(readers["member"], collection)
        assert set(Document.objects.get(pk=document.pk).chunks.values_list("pk", flat=True)) == chunks
    finally:
        server.close()


def found_names(user, collection) -> set[str]:
    passages = chat_services.passages_ranked(user=user, collection=collection, query="policy of the company", k=50)
    return {p.document_name for p in passages}


def test_a_sync_killed_mid_way_resumes_with_every_page_memo_in_step(
    collection, control, readers, site, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    url = site.url
    holidays = f"{url}/handbook/holidays.html"
    connector = web_connector(collection, site)

    # Killed right after the second page was stored, before its memo (validators, links) was.
    assert [i.source_id for i in killed_after(connector, holidays)] == [f"{url}/", holidays]
    row = ConnectorItem.objects.get(connector=connector, source_id=holidays)
    assert row.document is not None and row.memo == {}
    site.site.take_requests()
    first = resumed(connector, settings)
    assert {sid: a for sid, a in actions(first).items() if a != "added"} == {
        f"{url}/": "unchanged",
        holidays: "unchanged",
    }
    assert len(actions(first)) == 9
    # The home page's memo made its request conditional; the page without one was asked for in full.
    requested = site.site.take_requests()
    assert ("GET", "/", 304) in requested and ("GET", "/handbook/holidays.html", 200) in requested

    # An edited page and a removed one, killed right after the edited page's new version was stored.
    site.site.put("/handbook/holidays.html", page("Holiday policy", (
        "<p>Every employee now has thirty-two days of paid holiday, including the quokka day.</p>"
        '<p>The signed <a href="/files/memo.pdf">memo</a> explains the carry-over rules.</p>')))  # fmt: skip
    site.site.remove("/handbook/travel.html")
    assert killed_after(connector, holidays)[-1].action == "updated"
    second = resumed(connector, settings)
    assert {sid: a for sid, a in actions(second).items() if a != "unchanged"} == {
        f"{url}/handbook/travel.html": "deleted"
    }
    assert ConnectorItem.objects.get(connector=connector, source_id=holidays).memo["etag"] == (
        site.site.resources["/handbook/holidays.html"].etag
    )

    # Every memo is in step again: nothing changed, every request answers 304, nothing is read.
    site.site.take_requests()
    third = run(connector)
    assert set(actions(third).values()) == {"unchanged"} and third.bytes_read == 0
    answers = {path: status for _, path, status in site.site.take_requests() if path != "/robots.txt"}
    assert answers.pop("/handbook/travel.html") == 404  # still linked from the roadmap
    assert set(answers.values()) == {304}

    run(uninterrupted := web_connector(control, site, name="control"))
    assert_same_as_control(connector, uninterrupted, users=readers, query="bonus holiday", restricted="bonus.html")
