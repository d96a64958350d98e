"""A Confluence connector against a local fake of the documented REST API (Cloud v2/v1 and Data Center).

Pages are listed page by page of results, read as storage format, and restricted by the
space's read permission and the page's read restrictions, mapped onto product groups.
"""

from __future__ import annotations

import pytest

from assistant.connectors import selectors, services
from assistant.connectors.models import Connector, ConnectorItem
from ingest.models import Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.cloud_fixtures import found
from tests.connectors.conftest import actions, run
from tests.connectors.fake_confluence import FakeConfluence

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing_key")]

MAPPING = {"confluence-users": ["*"], "hr-team": ["hr"]}


def wiki_connector(collection, wiki: FakeConfluence) -> Connector:
    return services.connector_add(
        collection=collection, kind="confluence", name=f"wiki-{collection.pk}",
        settings={"base_url": wiki.site, "deployment": "cloud" if wiki.cloud else "datacenter", "spaces": ["ENG"],
                  "email": wiki.EMAIL if wiki.cloud else "", "groups": MAPPING},
        credentials={"secret": wiki.TOKEN if wiki.cloud else wiki.PAT},
    )  # fmt: skip


def test_cloud_pages_sync_with_restrictions_and_follow_every_change(
    cloud_wiki,
    collection,
    readers,
    waits,
    settings,
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    wiki = cloud_wiki
    wiki.add_space("ENG", ["confluence-users"])
    wiki.put_page("1", "ENG", "Onboarding", "<p>New staff get a laptop on the first day.</p>")
    wiki.put_page("2", "ENG", "Salaries", "<p>The salary bands run from A to F.</p>", restricted_groups=["hr-team"])
    wiki.put_page("3", "ENG", "Roadmap", '<p>The roadmap</p><ac:structured-macro ac:name="info">'
                  '<ac:parameter ac:name="icon">true</ac:parameter><ac:rich-text-body><p>ships in May.</p>'
                  "</ac:rich-text-body></ac:structured-macro>")  # fmt: skip
    wiki.put_page("4", "ENG", "Board minutes", "<p>The board met twice.</p>", restricted_users=["alice"])
    wiki.throttle("/restriction/byOperation/read", times=1, retry_after="2")
    connector = wiki_connector(collection, wiki)

    first = run(connector)
    assert actions(first) == {f"ENG/{n}": "added" for n in "1234"}
    assert waits == [2.0]  # the throttled restriction request was waited out and asked again
    listings = wiki.paths("/api/v2/spaces/65536/pages")
    assert len(listings) == 2 and "cursor=2" in listings[1]  # the second page of results was followed
    # The storage format became readable text; macro parameters are not text.
    roadmap = found(readers["manager"], collection, "roadmap ships")["Roadmap.html"]
    assert "ships in May" in roadmap and "true" not in roadmap
    assert set(found(readers["outsider"], collection, "staff")) == {"Onboarding.html", "Roadmap.html"}
    assert set(found(readers["member"], collection, "staff")) == {"Onboarding.html", "Roadmap.html", "Salaries.html"}
    assert set(found(readers["manager"], collection, "staff")) == {
        "Onboarding.html", "Roadmap.html", "Salaries.html", "Board minutes.html",
    }  # fmt: skip
    onboarding = Document.objects.get(name="Onboarding.html")
    assert selectors.source_link(document_id=onboarding.pk) == f"{wiki.site}/spaces/ENG/pages/1/Onboarding"
    assert all(r.headers["Authorization"].startswith("Basic ") for r in wiki.requests)

    wiki.put_page("1", "ENG", "Onboarding", "<p>New staff first meet the quokka at reception.</p>")  # edited
    wiki.put_page("2", "ENG", "Pay scales", "<p>The salary bands run from A to F.</p>", restricted_groups=["hr-team"])
    del wiki.pages["3"]  # deleted
    wiki.pages["4"].restricted_users = []  # restriction lifted (no new version)
    wiki.put_page("5", "ENG", "Holidays", "<p>Thirty days of holiday.</p>")  # added
    second = run(connector)
    assert actions(second) == {
        "ENG/1": "updated", "ENG/2": "updated", "ENG/3": "deleted", "ENG/4": "permissions", "ENG/5": "added",
    }  # fmt: skip
    outsider = found(readers["outsider"], collection, "quokka reception")
    assert set(outsider) == {"Onboarding.html", "Board minutes.html", "Holidays.html"}
    assert "quokka" in outsider["Onboarding.html"] and "laptop" not in outsider["Onboarding.html"]
    assert "Pay scales.html" in found(readers["member"], collection, "salary")
    assert not Document.objects.filter(name__in=["Roadmap.html", "Salaries.html"]).exists()

    third = run(connector)  # nothing changed: nothing read
    assert set(actions(third).values()) == {"unchanged"} and third.bytes_read == 0


@pytest.mark.parametrize("deployment", ["cloud_wiki", "dc_wiki"])
def test_an_answer_right_after_a_sync_cites_the_edited_page_and_keeps_the_restricted_one_from_outsiders(
    deployment: str, request, collection, readers, answering
) -> None:
    wiki: FakeConfluence = request.getfixturevalue(deployment)
    wiki.add_space("ENG", ["confluence-users"])
    wiki.put_page("1", "ENG", "Parking", f"<p>{PARKING.before}</p>")
    wiki.put_page("2", "ENG", "Salaries", f"<p>{SALARIES.before}</p>", restricted_groups=["hr-team"])
    connector = wiki_connector(collection, wiki)
    run(connector)
    public, restricted = "Parking.html", "Salaries.html"
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=False)

    wiki.put_page("1", "ENG", "Parking", f"<p>{PARKING.after}</p>")
    wiki.put_page("2", "ENG", "Salaries", f"<p>{SALARIES.after}</p>", restricted_groups=["hr-team"])
    assert actions(run(connector)) == {"ENG/1": "updated", "ENG/2": "updated"}
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=True)


def test_data_center_pages_with_a_token_start_limit_paging_and_a_failing_page(
    dc_wiki,
    collection,
    readers,
    waits,
    settings,
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    settings.CONNECTOR_RETRY_ATTEMPTS = 3
    wiki = dc_wiki
    wiki.add_space("ENG", ["confluence-users"])
    wiki.put_page("11", "ENG", "Expenses", "<p>Expenses are paid monthly.</p>")
    wiki.put_page("12", "ENG", "Reviews", "<p>Salary reviews happen in March.</p>", restricted_groups=["hr-team"])
    wiki.put_page("13", "ENG", "Travel", "<p>Book travel through the portal.</p>")
    wiki.throttle("/rest/api/content/13?", times=100, retry_after=None, status=503)  # down for this page
    connector = wiki_connector(collection, wiki)

    first = run(connector)
    assert actions(first) == {"ENG/11": "added", "ENG/12": "added", "ENG/13": "failed"}
    failed = next(i for i in first.items if i.action == "failed")
    assert "Confluence answered 503" in failed.error and "gave up after 3 tries" in failed.error
    assert len(waits) == 2
    assert any("start=2" in p for p in wiki.paths("/confluence/rest/api/content?"))
    assert all(r.headers["Authorization"] == f"Bearer {wiki.PAT}" for r in wiki.requests)
    assert "ENG/13" in Connector.objects.get(pk=connector.pk).last_error
    assert set(found(readers["outsider"], collection, "salary")) == {"Expenses.html"}
    assert set(found(readers["member"], collection, "salary")) == {"Expenses.html", "Reviews.html"}
    assert selectors.source_link(document_id=Document.objects.get(name="Reviews.html").pk) == (
        f"{wiki.site}/pages/viewpage.action?pageId=12"
    )

    wiki.throttles.clear()  # the page answers again: the next run brings it in
    second = run(connector)
    assert actions(second)["ENG/13"] == "added" and ConnectorItem.objects.filter(error="").count() == 3


def test_cloud_attachments_follow_their_page_and_restrictions_come_down_from_ancestors(
    cloud_wiki, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    wiki = cloud_wiki
    wiki.add_space("ENG", ["confluence-users"])
    wiki.put_page("10", "ENG", "People", "<p>The people team's pages.</p>", restricted_groups=["hr-team"])
    wiki.put_page("11", "ENG", "Benefits", "<p>Staff benefits include a bike lease.</p>", parent="10")
    wiki.put_page("12", "ENG", "Handbook", "<p>The staff handbook.</p>")
    wiki.attach("12", "att-1", "travel-policy.md", b"# Travel\n\nStaff travel by night train is refunded in full.\n")
    wiki.attach("11", "att-2", "bonus-scheme.md", b"# Bonus\n\nThe staff bonus scheme pays in March.\n")
    connector = wiki_connector(collection, wiki)

    first = run(connector)
    assert actions(first) == {
        "ENG/10": "added", "ENG/11": "added", "ENG/11/attachments/att-2": "added", "ENG/12": "added",
        "ENG/12/attachments/att-1": "added",
    }  # fmt: skip
    handbook, travel = Document.objects.get(name="Handbook.html"), Document.objects.get(name="travel-policy.md")
    assert travel.parent_id == handbook.pk and travel.status == "ready"
    assert Document.objects.get(name="bonus-scheme.md").parent_id == Document.objects.get(name="Benefits.html").pk
    # "Benefits" has no restriction of its own, but its parent's keeps it (and its attachment) from the outsider.
    assert set(found(readers["outsider"], collection, "staff")) == {"Handbook.html", "travel-policy.md"}
    assert set(found(readers["member"], collection, "staff")) == {
        "People.html", "Benefits.html", "bonus-scheme.md", "Handbook.html", "travel-policy.md",
    }  # fmt: skip
    assert "night train" in found(readers["outsider"], collection, "night train")["travel-policy.md"]
    assert not wiki.paths("/ancestors")  # every parent was a listed page: no extra request
    assert len(wiki.paths("/restriction/byOperation/read")) == 3  # once per page, attachments included

    # A new version of the attachment (the page's version stays), an edited page, a lifted parent restriction.
    wiki.attach("12", "att-1", "travel-policy.md", b"# Travel\n\nStaff travel: the quokka express is refunded.\n")
    wiki.put_page("12", "ENG", "Handbook", "<p>The staff handbook, second edition.</p>")
    wiki.pages["10"].restricted_groups = []
    second = run(connector)
    assert actions(second) == {
        "ENG/10": "permissions", "ENG/11": "permissions", "ENG/11/attachments/att-2": "permissions",
        "ENG/12": "updated", "ENG/12/attachments/att-1": "updated",
    }  # fmt: skip
    new_handbook, new_travel = Document.objects.get(name="Handbook.html"), Document.objects.get(name="travel-policy.md")
    assert new_handbook.pk != handbook.pk and new_travel.parent_id == new_handbook.pk
    outsider = found(readers["outsider"], collection, "quokka express")
    assert "quokka" in outsider["travel-policy.md"] and "night train" not in outsider["travel-policy.md"]
    assert {"Benefits.html", "bonus-scheme.md"} <= set(outsider)

    del wiki.pages["12"]  # the page goes, and its attachment with it
    third = run(connector)
    assert actions(third)["ENG/12"] == "deleted" and actions(third)["ENG/12/attachments/att-1"] == "deleted"
    assert not Document.objects.filter(name__in=["Handbook.html", "travel-policy.md"]).exists()
    assert set(actions(run(connector)).values()) == {"unchanged"}


def test_a_cloud_page_in_a_folder_asks_for_its_ancestors_and_keeps_the_folders_restriction(
    cloud_wiki, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    cloud_wiki.add_space("ENG", ["confluence-users"])
    cloud_wiki.folders["f-7"] = ["hr-team"]
    cloud_wiki.put_page("31", "ENG", "Reviews", "<p>Staff reviews are in March.</p>", folder="f-7")
    cloud_wiki.put_page("32", "ENG", "Lunch", "<p>Staff lunch is at noon.</p>")
    run(wiki_connector(collection, cloud_wiki))
    assert cloud_wiki.paths("/ancestors") == ["/wiki/api/v2/pages/31/ancestors?limit=250"]
    assert set(found(readers["outsider"], collection, "staff")) == {"Lunch.html"}
    assert set(found(readers["member"], collection, "staff")) == {"Reviews.html", "Lunch.html"}


def test_data_center_reads_ancestors_with_the_listing_and_attachments_of_restricted_pages(
    dc_wiki, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    dc_wiki.add_space("ENG", ["confluence-users"])
    dc_wiki.put_page("21", "ENG", "Board", "<p>The board's staff pages.</p>", restricted_groups=["hr-team"])
    dc_wiki.put_page("22", "ENG", "Minutes", "<p>Staff minutes.</p>", parent="21")
    dc_wiki.put_page("23", "ENG", "Deep", "<p>Staff notes, deeper down.</p>", parent="22")
    dc_wiki.attach("23", "att-9", "plan.txt", b"The staff plan for the merger.\n", "text/plain")
    dc_wiki.put_page("24", "ENG", "Canteen", "<p>Staff lunch is at noon.</p>")
    run(wiki_connector(collection, dc_wiki))
    assert any("expand=version%2Cancestors" in p for p in dc_wiki.paths("/rest/api/content?"))
    assert set(found(readers["outsider"], collection, "staff")) == {"Canteen.html"}
    assert set(found(readers["member"], collection, "staff")) == {
        "Board.html", "Minutes.html", "Deep.html", "plan.txt", "Canteen.html",
    }  # fmt: skip


def test_a_space_whose_groups_are_not_mapped_is_seen_by_managers_only(dc_wiki, collection, readers) -> None:
    dc_wiki.add_space("ENG", ["engineering"])  # a Confluence group the mapping does not name
    dc_wiki.put_page("21", "ENG", "Design", "<p>The design of the new staff portal.</p>")
    run(wiki_connector(collection, dc_wiki))
    assert found(readers["outsider"], collection, "staff") == {}
    assert set(found(readers["manager"], collection, "staff")) == {"Design.html"}


def test_settings_are_checked() -> None:
    from assistant.connectors.sources.confluence import ConfluenceSource

    with pytest.raises(ValueError, match="--url"):
        ConfluenceSource.clean_settings({"spaces": ["ENG"]})
    with pytest.raises(ValueError, match="--email"):
        ConfluenceSource.clean_settings({"base_url": "https://x.atlassian.net/wiki", "spaces": ["ENG"]})
    with pytest.raises(ValueError, match="space key"):
        ConfluenceSource.clean_settings({"base_url": "https://w.example", "deployment": "datacenter",
                                         "spaces": ["../etc"]})  # fmt: skip


def test_a_changed_space_permission_re_restricts_its_pages_without_re_embedding(
    cloud_wiki, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    cloud_wiki.add_space("ENG", ["confluence-users"])
    cloud_wiki.put_page("1", "ENG", "Onboarding", "<p>New staff get a laptop on the first day.</p>")
    cloud_wiki.put_page("2", "ENG", "Canteen", "<p>The staff canteen opens at noon.</p>")
    connector = wiki_connector(collection, cloud_wiki)
    run(connector)
    assert set(found(readers["outsider"], collection, "staff")) == {"Onboarding.html", "Canteen.html"}
    chunks = set(Document.objects.filter(collection=collection).values_list("chunks__pk", flat=True))

    # The space's administrator takes the read permission from everyone but hr-team (no page changes).
    cloud_wiki.spaces["ENG"]["readers"] = ["hr-team"]
    report = run(connector)
    assert actions(report) == {"ENG/1": "permissions", "ENG/2": "permissions"}
    assert report.fetched == 0 and report.queued == []
    assert found(readers["outsider"], collection, "staff") == {}
    assert set(found(readers["member"], collection, "staff")) == {"Onboarding.html", "Canteen.html"}
    assert set(Document.objects.filter(collection=collection).values_list("chunks__pk", flat=True)) == chunks

    # And given back: readable again for every reader of the collection.
    cloud_wiki.spaces["ENG"]["readers"] = ["confluence-users", "hr-team"]
    report = run(connector)
    assert set(actions(report).values()) == {"permissions"}
    assert set(found(readers["outsider"], collection, "staff")) == {"Onboarding.html", "Canteen.html"}
