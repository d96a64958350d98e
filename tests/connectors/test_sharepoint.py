"""A SharePoint/OneDrive connector against a local fake of Microsoft Graph's documented API.

The first sync enumerates the drive by delta query; the delta link it ends with is
stored, and the next sync asks only for the changes since.
"""

from __future__ import annotations

import pytest

from assistant.connectors import selectors, services
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.sync import MANAGERS_ONLY_GROUP
from ingest.models import Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.cloud_fixtures import found
from tests.connectors.conftest import actions, assert_same_as_control, killed_after, killed_reading, resumed, run
from tests.connectors.vendor_fakes import FakeGraph

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing_key")]


def drive_connector(collection, fake: FakeGraph, secret: str = FakeGraph.SECRET) -> Connector:
    return services.connector_add(
        collection=collection, kind="sharepoint", name=f"drive-{collection.pk}",
        settings={"tenant": fake.TENANT, "drive_id": fake.DRIVE, "client_id": fake.CLIENT_ID,
                  "graph_url": f"{fake.base}/v1.0", "login_url": f"{fake.base}/login",
                  "groups": {"All Staff": ["*"], "HR Team": ["hr"]}},
        credentials={"secret": secret},
    )  # fmt: skip


def delta_requests(fake: FakeGraph) -> list[str]:
    return fake.paths("/root/delta")


def test_the_delta_link_is_reused_and_every_change_is_reflected(
    graph,
    collection,
    readers,
    waits,
    settings,
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    fake = graph
    fake.put("01A", "handbook.md", b"# Handbook\n\nStaff get a laptop on the first day.")
    fake.put("01B", "salaries.md", b"# Salaries\n\nThe salary bands of staff run from A to F.", groups=["HR Team"])
    fake.put("01C", "old.md", b"# Old\n\nThe old canteen menu for staff.")
    fake.put("01D", "board.md", b"# Board\n\nThe board's view on staff.", groups=["Board"])
    fake.put("01E", "faq.md", b"# FAQ\n\nQuestions staff ask.")
    connector = drive_connector(collection, fake)

    first = run(connector)
    assert actions(first) == dict.fromkeys(("01A", "01B", "01C", "01D", "01E"), "added")
    assert len(fake.paths("/oauth2/v2.0/token")) == 1  # one token for the whole run
    assert any("token=page-" in p for p in delta_requests(fake))  # @odata.nextLink followed
    cursor = Connector.objects.get(pk=connector.pk).changes_cursor
    assert cursor == f"{fake.base}/v1.0/drives/{fake.DRIVE}/root/delta?token={fake.counter}"
    assert set(found(readers["outsider"], collection, "staff")) == {"handbook.md", "old.md", "faq.md"}
    assert set(found(readers["member"], collection, "staff")) == {"handbook.md", "old.md", "faq.md", "salaries.md"}
    board = Document.objects.get(name="board.md")  # "Board" is not mapped: managers only
    assert [g.name for g in board.restricted_to_groups.all()] == [MANAGERS_ONLY_GROUP]
    salaries = Document.objects.get(name="salaries.md")
    salary_chunks = set(salaries.chunks.values_list("pk", flat=True))

    fake.put("01A", "handbook.md", b"# Handbook\n\nStaff first meet the quokka at reception.")  # edited
    fake.rename("01B", "pay.md", folder="hr")  # renamed and moved: same id, same content
    fake.delete("01C")
    fake.share("01D", ["All Staff"])  # shared with everyone
    fake.put("01F", "holidays.md", b"# Holidays\n\nStaff get thirty days.")  # added
    fake.throttle("/root/delta", times=1, retry_after="5")
    fake.requests.clear()
    second = run(connector)
    assert waits == [5.0]  # Graph's throttling was waited out
    assert delta_requests(fake)[0].endswith(f"?token={cursor.rsplit('=', 1)[1]}")  # asked from the stored link
    assert actions(second) == {
        "01A": "updated", "01B": "renamed", "01C": "deleted", "01D": "permissions", "01F": "added",
    }  # fmt: skip
    assert second.seen == 4  # only the changes were listed: faq.md was not
    assert fake.paths("/items/01B/content") == [] and fake.paths("/items/01D/content") == []  # not read again
    salaries.refresh_from_db()
    assert salaries.name == "pay.md" and set(salaries.chunks.values_list("pk", flat=True)) == salary_chunks
    assert selectors.source_link(document_id=salaries.pk) == f"{fake.base}/sites/team/Shared%20Documents/hr/pay.md"
    outsider = found(readers["outsider"], collection, "quokka reception")
    assert set(outsider) == {"handbook.md", "board.md", "faq.md", "holidays.md"}
    assert "quokka" in outsider["handbook.md"] and "laptop" not in outsider["handbook.md"]
    assert "pay.md" in found(readers["member"], collection, "salary")

    fake.requests.clear()
    third = run(connector)  # nothing changed: one delta request, nothing listed, nothing read
    assert third.items == [] and third.bytes_read == 0
    assert len(delta_requests(fake)) == 1


def test_an_answer_right_after_a_sync_cites_the_edited_file_and_keeps_the_restricted_one_from_outsiders(
    graph, collection, readers, answering
) -> None:
    graph.put("01A", "parking.md", f"# Parking\n\n{PARKING.before}".encode())
    graph.put("01B", "salaries.md", f"# Salaries\n\n{SALARIES.before}".encode(), groups=["HR Team"])
    connector = drive_connector(collection, graph)
    run(connector)
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=False)

    graph.put("01A", "parking.md", f"# Parking\n\n{PARKING.after}".encode())
    graph.put("01B", "salaries.md", f"# Salaries\n\n{SALARIES.after}".encode(), groups=["HR Team"])
    assert actions(run(connector)) == {"01A": "updated", "01B": "updated"}  # from the delta query
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=True)


def test_an_item_that_fails_keeps_the_cursor_so_the_next_sync_asks_again(
    graph,
    collection,
    waits,
    settings,
) -> None:
    settings.CONNECTOR_RETRY_ATTEMPTS = 2
    fake = graph
    fake.put("01A", "a.md", b"# A\n\nAlpha.")
    connector = drive_connector(collection, fake)
    run(connector)
    cursor = Connector.objects.get(pk=connector.pk).changes_cursor
    fake.put("01B", "b.md", b"# B\n\nBeta.")
    fake.put("01C", "c.md", b"# C\n\nGamma.")
    fake.throttle("/items/01B/content", times=100, retry_after="1", status=503)
    second = run(connector)
    assert actions(second) == {"01B": "failed", "01C": "added"}
    assert "Microsoft Graph answered 503" in second.items[0].error
    assert Connector.objects.get(pk=connector.pk).changes_cursor == cursor  # not moved past the failure
    fake.throttles.clear()
    third = run(connector)
    assert actions(third) == {"01B": "added", "01C": "unchanged"}
    assert Connector.objects.get(pk=connector.pk).changes_cursor != cursor


def test_an_expired_delta_link_starts_over_without_duplicates(graph, collection) -> None:
    fake = graph
    fake.put("01A", "a.md", b"# A\n\nAlpha.")
    fake.put("01B", "b.md", b"# B\n\nBeta.")
    connector = drive_connector(collection, fake)
    run(connector)
    cursor = Connector.objects.get(pk=connector.pk).changes_cursor
    fake.expired_delta_tokens.add(cursor.rsplit("=", 1)[1])
    del fake.items["01B"]  # gone while the link expired: only a full listing can tell
    report = run(connector)
    assert actions(report) == {"01A": "unchanged", "01B": "deleted"}
    assert list(Document.objects.values_list("name", flat=True)) == ["a.md"]


def test_a_refused_client_secret_stops_the_sync_with_the_reason_and_changes_nothing(graph, collection) -> None:
    graph.put("01A", "a.md", b"# A\n\nAlpha.")
    report = run(drive_connector(collection, graph, secret="wrong"))
    assert "refused the app's credentials" in report.error and "invalid_client" in report.error
    assert not Document.objects.exists()


def test_a_changed_mapping_lists_everything_again(graph, collection, readers, settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    graph.put("01A", "board.md", b"# Board\n\nThe board's view on staff.", groups=["Board"])
    connector = drive_connector(collection, graph)
    run(connector)
    services.connector_change(connector=connector, settings={"groups": {"Board": ["*"]}})
    assert Connector.objects.get(pk=connector.pk).changes_cursor == ""
    report = run(connector)
    assert actions(report) == {"01A": "permissions"}
    assert set(found(readers["outsider"], collection, "staff")) == {"board.md"}


def test_a_deleted_folder_makes_the_next_sync_list_everything(graph, collection) -> None:
    fake = graph
    fake.put("01A", "a.md", b"# A\n\nAlpha.", folder="team")
    fake.put("01B", "b.md", b"# B\n\nBeta.")
    connector = drive_connector(collection, fake)
    run(connector)
    # The folder "team" goes; the delta names only the folder, not the file in it.
    fake.put("01F", "team", b"")
    fake.delete("01F")
    del fake.items["01A"]
    second = run(connector)
    assert actions(second) == {} and Connector.objects.get(pk=connector.pk).changes_cursor == ""
    third = run(connector)
    assert actions(third) == {"01A": "deleted", "01B": "unchanged"}
    assert list(Document.objects.values_list("name", flat=True)) == ["b.md"]
    assert Connector.objects.get(pk=connector.pk).changes_cursor.endswith(f"token={fake.counter}")


def test_a_sync_killed_at_any_point_resumes_and_the_delta_link_never_passes_an_unsettled_item(
    graph, collection, control, readers, settings, monkeypatch
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    fake = graph
    fake.put("01A", "handbook.md", b"# Handbook\n\nStaff get a laptop on the first day.")
    fake.put("01B", "salaries.md", b"# Salaries\n\nThe salary bands of staff run from A to F.", groups=["HR Team"])
    fake.put("01C", "canteen.md", b"# Canteen\n\nThe staff canteen opens at noon.")
    fake.put("01D", "parking.md", b"# Parking\n\nStaff park behind the depot.")
    fake.put("01E", "faq.md", b"# FAQ\n\nQuestions staff ask.")
    connector = drive_connector(collection, fake)

    # The first (full) enumeration, killed while reading the third file: no delta link yet.
    killed_reading(connector, "01C", monkeypatch)
    assert Connector.objects.get(pk=connector.pk).changes_cursor == ""
    assert sorted(ConnectorItem.objects.values_list("source_id", flat=True)) == ["01A", "01B"]
    first = resumed(connector, settings)
    assert actions(first) == {"01A": "unchanged", "01B": "unchanged", "01C": "added", "01D": "added", "01E": "added"}
    assert [len(fake.paths(f"/items/{i}/content")) for i in ("01A", "01B", "01C")] == [1, 1, 1]  # none read twice
    cursor = Connector.objects.get(pk=connector.pk).changes_cursor
    assert cursor.endswith(f"token={fake.counter}")

    # Changes since, killed after the first changed item: the stored delta link stays where it was.
    fake.put("01A", "handbook.md", b"# Handbook\n\nStaff first meet the quokka at reception.")
    fake.put("01E", "faq.md", b"# FAQ\n\nQuestions staff ask about the quokka.")
    fake.put("01F", "holidays.md", b"# Holidays\n\nStaff get thirty days.")
    fake.delete("01C")
    fake.delete("01D")
    assert [i.action for i in killed_after(connector, "01A")] == ["updated"]
    assert Connector.objects.get(pk=connector.pk).changes_cursor == cursor
    second = resumed(connector, settings)
    # Asked again from the same link: the settled item compares equal, the rest is done.
    assert actions(second) == {
        "01A": "unchanged", "01E": "updated", "01F": "added", "01C": "deleted", "01D": "deleted",
    }  # fmt: skip
    assert len(fake.paths("/items/01A/content")) == 2  # read once for its new version, not again
    cursor = Connector.objects.get(pk=connector.pk).changes_cursor
    assert cursor.endswith(f"token={fake.counter}")

    # Deletions killed half-way: the link stays; the resumed run completes them.
    fake.delete("01E")
    fake.delete("01F")
    assert [(i.source_id, i.action) for i in killed_after(connector, "01E")] == [("01E", "deleted")]
    assert Connector.objects.get(pk=connector.pk).changes_cursor == cursor
    third = resumed(connector, settings)
    assert actions(third) == {"01F": "deleted"}
    # It met a deletion of an item it no longer holds (01E, deleted by the killed run), which
    # reads like a deleted folder: the next run lists everything, and finds nothing to do.
    assert Connector.objects.get(pk=connector.pk).changes_cursor == ""
    fourth = run(connector)
    assert actions(fourth) == {"01A": "unchanged", "01B": "unchanged"} and fourth.bytes_read == 0
    assert Connector.objects.get(pk=connector.pk).changes_cursor.endswith(f"token={fake.counter}")

    run(uninterrupted := drive_connector(control, fake))
    assert_same_as_control(connector, uninterrupted, users=readers, query="staff", restricted="salaries.md")
