"""A WebDAV connector against a real WebDAV server (WsgiDAV on cheroot, loopback, a real login)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat_services
from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.secrets import new_key
from ingest.models import Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.conftest import actions, run, write
from tests.factories import GroupFactory, UserFactory
from tests.support.dav import PASSWORD, USER, DavServer

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def dav(tmp_path_factory) -> Iterator[DavServer]:
    server = DavServer(tmp_path_factory.mktemp("dav"))
    yield server
    server.close()


@pytest.fixture
def share(dav: DavServer, request) -> Path:
    """A folder of its own on the shared server for each test."""
    folder = dav.root / request.node.name[:40]
    folder.mkdir()
    return folder


@pytest.fixture(autouse=True)
def _key(settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()


def dav_connector(collection, dav: DavServer, share: Path, *, password: str = PASSWORD, **settings) -> Connector:
    settings.setdefault("groups", [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}])
    return services.connector_add(
        collection=collection, kind="webdav", name=f"dav-{share.name}"[:200], credentials={"secret": password},
        settings={"url": dav.url + share.name + "/", "username": USER, **settings},
    )  # fmt: skip


def test_add_edit_delete_and_rename_on_the_server_are_reflected(collection, dav, share) -> None:
    write(share, "plan.md", "# Plan\n\nThe plan starts in spring.", mtime=1_700_000_000)
    write(share, "team/minutes.md", "# Minutes\n\nThe team meets on Tuesdays in room 4.", mtime=1_700_000_000)
    write(share, "old.txt", "Notes about the old warehouse.", mtime=1_700_000_000)
    write(share, "drafts/skip.md", "# Draft\n\nNot for the collection.", mtime=1_700_000_000)
    write(share, ".hidden.md", "hidden", mtime=1_700_000_000)
    connector = dav_connector(collection, dav, share, exclude=["drafts/"])

    first = run(connector)
    assert actions(first) == {"plan.md": "added", "team/minutes.md": "added", "old.txt": "added"}
    minutes = Document.objects.get(collection=collection, name="minutes.md")
    assert selectors.source_link(document_id=minutes.pk) == f"{dav.url}{share.name}/team/minutes.md"

    write(share, "plan.md", "# Plan\n\nThe plan now starts with the quokka survey.", mtime=1_700_000_100)
    write(share, "new.md", "# New\n\nThe harbour office opens.", mtime=1_700_000_100)
    (share / "old.txt").unlink()
    dav.move(f"{share.name}/team/minutes.md", f"{share.name}/minutes-2027.md")

    second = run(connector)
    assert actions(second) == {
        "plan.md": "updated", "new.md": "added", "old.txt": "deleted", "minutes-2027.md": "renamed",
    }  # fmt: skip
    minutes.refresh_from_db()
    assert minutes.name == "minutes-2027.md"
    passages = chat_services.passages_retrieve(user=None, collection=collection, query="quokka survey plan", k=3)
    assert passages and passages[0].document_name == "plan.md" and "quokka" in passages[0].text

    third = run(connector)
    assert set(actions(third).values()) == {"unchanged"} and third.fetched == 0


def test_an_answer_right_after_a_sync_cites_the_edited_text_and_keeps_the_restricted_file_from_outsiders(
    collection, dav, share, readers, answering
) -> None:
    write(share, "parking.md", f"# Parking\n\n{PARKING.before}", mtime=1_700_000_000)
    write(share, "hr/salaries.md", f"# Salaries\n\n{SALARIES.before}", mtime=1_700_000_000)
    connector = dav_connector(collection, dav, share)
    run(connector)
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=False)

    write(share, "parking.md", f"# Parking\n\n{PARKING.after}", mtime=1_700_000_100)
    write(share, "hr/salaries.md", f"# Salaries\n\n{SALARIES.after}", mtime=1_700_000_100)
    assert actions(run(connector)) == {"parking.md": "updated", "hr/salaries.md": "updated"}
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=True)


def test_a_restricted_file_is_read_only_by_its_group(collection, dav, share, settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    hr = GroupFactory.create(name="hr")
    outsider, member = UserFactory.create(), UserFactory.create()
    member.groups.add(hr)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
    write(share, "hr/salaries.md", "# Salaries\n\nThe salary policy of the company: bands A to F.")
    write(share, "public/holidays.md", "# Holidays\n\nThe holiday policy of the company: 30 days.")
    run(dav_connector(collection, dav, share))

    def found(user) -> set[str]:
        passages = chat_services.passages_ranked(user=user, collection=collection, query="policy of the company", k=50)
        return {p.document_name for p in passages}

    assert found(outsider) == {"holidays.md"}
    assert found(member) == {"holidays.md", "salaries.md"}


def test_a_refused_login_or_a_missing_folder_stops_with_a_clear_error(collection, dav, share) -> None:
    write(share, "a.md", "# A\n\ntext")
    report = run(dav_connector(collection, dav, share, password="wrong"))
    assert "refused the login" in report.error and "401" in report.error and report.items == []
    missing = services.connector_add(
        collection=collection, kind="webdav", name="missing", credentials={"secret": PASSWORD},
        settings={"url": dav.url + "no-such-folder/", "username": USER},
    )  # fmt: skip
    report = run(missing)
    assert "No such WebDAV folder" in report.error and "404" in report.error


def test_the_command_adds_a_webdav_connector(collection, dav, share, monkeypatch) -> None:
    monkeypatch.setenv("DAV_PASSWORD", PASSWORD)
    write(share, "a.md", "# A\n\nThe command's file.")
    out = StringIO()
    call_command("connector", "add", "--collection", collection.name, "--type", "webdav", "--name", "nextcloud",
                 "--url", dav.url + share.name, "--username", USER, "--secret-env", "DAV_PASSWORD",
                 "--map", "**=*", stdout=out)  # fmt: skip
    call_command("connector", "sync", "nextcloud", "--wait", "--inline", stdout=out)
    assert "1 added" in out.getvalue()
    connector = Connector.objects.get(name="nextcloud")
    assert connector.settings["url"] == dav.url + share.name + "/" and PASSWORD not in str(connector.settings)
    assert os.environ["DAV_PASSWORD"] not in out.getvalue()


def test_a_busy_server_is_waited_out_and_what_never_answers_fails_with_the_reason(
    collection, dav, share, waits, settings
) -> None:
    settings.CONNECTOR_RETRY_ATTEMPTS = 3
    write(share, "a.md", "# A\n\nThe first file.")
    write(share, "b.md", "# B\n\nThe second file.")
    dav.throttle("PROPFIND", share.name, status=429, retry_after="3")
    dav.throttle("GET", f"{share.name}/a.md", times=2, status=503, retry_after="1")
    dav.throttle("GET", f"{share.name}/b.md", times=100, status=503, retry_after=None)
    connector = dav_connector(collection, dav, share)
    report = sync.connector_sync(connector=connector, enqueue=False)

    # The throttled listing and the unavailable file were waited out (recorded, not slept).
    assert not report.error and actions(report) == {"a.md": "added", "b.md": "failed"}
    assert waits[:3] == [3.0, 1.0, 1.0]
    # b.md never answers: it fails alone after its tries (jittered back-off), with the reason.
    assert len(waits) == 5 and 0 <= waits[3] <= 1 and 0 <= waits[4] <= 2
    assert "answered 503; gave up after 3 tries" in ConnectorItem.objects.get(source_id="b.md").error

    # A listing that never answers stops the sync with the reason and deletes nothing.
    dav.throttle("PROPFIND", share.name, times=100, status=503, retry_after="1")
    report = sync.connector_sync(connector=connector, enqueue=False)
    assert "Cannot list" in report.error and "gave up after 3 tries" in report.error and report.items == []
    assert Document.objects.filter(collection=collection).count() == 1


def test_a_changed_mapping_or_a_file_moved_into_another_folder_re_restricts_without_re_embedding(
    collection, dav, share, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    write(share, "public/pay.md", "# Pay\n\nThe pay policy of the company: bands A to F.", mtime=1_700_000_000)
    write(share, "public/canteen.md", "# Canteen\n\nThe canteen policy of the company: lunch at noon.")
    connector = dav_connector(collection, dav, share)
    run(connector)
    assert found_names(readers["outsider"], collection) == {"pay.md", "canteen.md"}
    document = Document.objects.get(collection=collection, name="pay.md")
    chunks = set(document.chunks.values_list("pk", flat=True))

    # Moved on the server into hr/, which the mapping gives to hr: the same document, restricted.
    (share / "hr").mkdir()
    dav.move(f"{share.name}/public/pay.md", f"{share.name}/hr/pay.md")
    report = run(connector)
    assert actions(report) == {"hr/pay.md": "renamed", "public/canteen.md": "unchanged"} and report.queued == []
    assert found_names(readers["outsider"], collection) == {"canteen.md"}
    assert found_names(readers["member"], collection) == {"pay.md", "canteen.md"}

    # The mapping changes: public/ is for hr only now; nothing is read or embedded again.
    services.connector_change(connector=connector, settings={"groups": [{"glob": "**", "groups": ["hr"]}]})
    report = run(connector)
    assert actions(report) == {"hr/pay.md": "unchanged", "public/canteen.md": "permissions"}
    assert report.fetched == 0 and report.queued == []
    assert found_names(readers["outsider"], collection) == set()
    assert found_names(readers["member"], collection) == {"pay.md", "canteen.md"}
    assert set(Document.objects.get(pk=document.pk).chunks.values_list("pk", flat=True)) == chunks


def found_names(user, collection) -> set[str]:
    passages = chat_services.passages_ranked(user=user, collection=collection, query="policy of the company", k=50)
    return {p.document_name for p in passages}
