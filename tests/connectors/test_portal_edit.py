"""The portal's connector edit page: managers only, pre-filled, the secret never shown, through ``connector_change``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.audit.models import AuditEvent
from assistant.connectors import services
from assistant.connectors.models import Connector
from assistant.connectors.secrets import credentials_open
from assistant.portal.connector_edit import edit_initial
from tests.connectors.conftest import actions, folder_connector, hr_and_public_policies, names_found, run
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "Sesame-web-0451"
NEW_SECRET = "Sesame-new-7788"


def edit_url(connector: Connector) -> str:
    return f"/portal/collections/{connector.collection_id}/connectors/{connector.pk}/edit"


def changes() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditEvent.Action.CONNECTOR_CHANGED).order_by("pk"))


def test_a_manager_changes_schedule_globs_and_mapping_and_the_next_sync_follows(
    client, source: Path, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    connector = hr_and_public_policies(source, collection)
    assert names_found(readers["outsider"], collection) == {"holidays.md"}

    client.force_login(readers["manager"])
    collection_page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert f'href="{edit_url(connector)}"' in collection_page
    page = client.get(edit_url(connector)).content.decode()
    assert f'value="{source}"' in page and "hr/**=hr\npublic/**=*</textarea>" in page
    assert 'name="name"' not in page and 'name="kind"' not in page

    # The hr folder is opened to everyone, drafts are left out, and it syncs every 15 minutes.
    response = client.post(edit_url(connector), {
        "path": str(source), "include": "", "exclude": "drafts/**", "groups": "**=*", "every": "15",
    })  # fmt: skip
    assert response.status_code == 302 and response["Location"].endswith(f"/collections/{collection.pk}/#connectors")
    connector.refresh_from_db()
    assert connector.every_minutes == 15 and connector.settings["exclude"] == ["drafts/**"]
    assert connector.settings["groups"] == [{"glob": "**", "groups": ["*"]}]
    (event,) = changes()
    assert event.actor == readers["manager"] and event.details["every_minutes"] == 15
    report = run(connector)
    assert actions(report)["hr/salaries.md"] == "permissions"
    assert names_found(readers["outsider"], collection) == {"holidays.md", "salaries.md"}

    # And closed again: the outsider loses it, the hr member (the control) keeps it.
    client.post(edit_url(connector), {"path": str(source), "groups": "hr/**=hr\n**=*", "every": "15"})
    run(connector)
    assert names_found(readers["outsider"], collection) == {"holidays.md"}
    assert names_found(readers["member"], collection) == {"holidays.md", "salaries.md"}


def test_the_secret_is_never_shown_and_an_empty_field_keeps_it(client, collection, readers, sealing_key) -> None:
    connector = services.connector_add(
        collection=collection, kind="web", name="Intranet", credentials={"secret": SECRET}, every_minutes=60,
        settings={"start_urls": ["http://127.0.0.1:9/"], "depth": 2, "max_pages": 1000, "username": "bot"},
    )  # fmt: skip
    client.force_login(readers["manager"])
    page = client.get(edit_url(connector)).content.decode()
    assert SECRET not in page and 'name="depth"' in page and 'value="bot"' in page
    assert "A secret is stored" in page

    form = {"urls": "http://127.0.0.1:9/", "depth": "1", "max_pages": "50", "username": "bot", "every": "60"}
    assert client.post(edit_url(connector), {**form, "secret": ""}).status_code == 302
    connector.refresh_from_db()
    assert (connector.settings["depth"], connector.settings["max_pages"]) == (1, 50)
    assert credentials_open(connector.credentials) == {"secret": SECRET}

    assert client.post(edit_url(connector), {**form, "secret": NEW_SECRET}).status_code == 302
    connector.refresh_from_db()
    assert credentials_open(connector.credentials) == {"secret": NEW_SECRET}
    assert [e.details.get("credentials") for e in changes()] == [None, "replaced"]
    assert NEW_SECRET not in str([e.details for e in changes()])
    page = client.get(edit_url(connector)).content.decode()
    assert NEW_SECRET not in page and SECRET not in page


def test_an_outsider_a_reader_or_a_writer_cannot_open_or_post_the_page(client, collection, readers, source) -> None:
    connector = folder_connector(collection, source, groups=[{"glob": "**", "groups": ["hr"]}])
    writer = UserFactory.create()
    collection_grant(collection=collection, user=writer, role=Role.WRITE)
    stranger = UserFactory.create()
    opened = {"path": str(source), "groups": "**=*", "every": "1"}
    for user in (readers["outsider"], readers["member"], writer, stranger):
        client.force_login(user)
        assert client.get(edit_url(connector)).status_code == 404
        assert client.post(edit_url(connector), opened).status_code == 404
    client.logout()
    assert client.post(edit_url(connector), opened).status_code == 302

    # A manager of another collection cannot reach this one's connector through their own.
    other = CollectionFactory.create(name="Other")
    collection_grant(collection=other, user=writer, role=Role.MANAGE)
    client.force_login(writer)
    assert client.get(f"/portal/collections/{other.pk}/connectors/{connector.pk}/edit").status_code == 404
    connector.refresh_from_db()
    assert connector.settings["groups"] == [{"glob": "**", "groups": ["hr"]}] and connector.every_minutes == 0
    assert changes() == []


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"every": "-5"}, "greater than or equal to 0"),
        ({"groups": "hr/** hr"}, "A group mapping is GLOB=GROUP"),
        ({"path": "/no/such/folder"}, "No such folder"),
    ],
)
def test_an_invalid_value_is_shown_as_text_and_changes_nothing(
    client, collection, readers, source, change, shown
) -> None:
    connector = folder_connector(collection, source, groups=[{"glob": "hr/**", "groups": ["hr"]}])
    client.force_login(readers["manager"])
    response = client.post(edit_url(connector), {"path": str(source), "groups": "**=*", "every": "5", **change})
    assert response.status_code == 200 and shown in response.content.decode()
    connector.refresh_from_db()
    assert connector.settings["groups"] == [{"glob": "hr/**", "groups": ["hr"]}] and connector.every_minutes == 0
    assert changes() == []


# One connector of each type, as the shell or an add form stores it (kind, settings, with a secret).
EVERY_TYPE: list[tuple[str, dict[str, Any], bool]] = [
    ("folder", {"include": ["*.md"], "groups": [{"glob": "hr/**", "groups": ["hr", "x"]}]}, False),
    ("web", {"start_urls": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], "sitemap": "http://127.0.0.1:9/s.xml",
             "depth": 3, "max_pages": 77, "exclude": ["people/**"]}, True),
    ("webdav", {"url": "https://cloud.example.com/dav/Shared", "username": "alice"}, True),
    ("imap", {"host": "mail.example.com", "security": "starttls", "user": "board@example.com",
              "folders": ["INBOX", "Board"], "groups": [{"glob": "**", "groups": ["board"]}]}, True),
    ("imap", {"host": "127.0.0.1", "port": 1143, "security": "plain", "allow_plain": True, "user": "test"}, True),
    ("smb", {"host": "files.example.com", "port": 1445, "share": "Team", "path": "Docs", "user": "EX\\reader",
             "permissions": "acl", "acl_groups": {"S-1-5-21-1-2-3-1104": ["hr"]}}, True),
    ("confluence", {"base_url": "https://wiki.example.com/confluence", "deployment": "datacenter",
                    "spaces": ["ENG", "OPS"], "groups": {"hr-team": ["hr"]}}, True),
    ("sharepoint", {"tenant": "contoso", "drive_id": "b!abc-123", "client_id": "app-1",
                    "groups": {"HR Team": ["hr"]}}, True),
]  # fmt: skip


def test_every_type_is_pre_filled_and_saving_it_unchanged_keeps_its_settings_and_secret(
    client, collection, readers, source, sealing_key
) -> None:
    client.force_login(readers["manager"])
    for number, (kind, type_settings, has_secret) in enumerate(EVERY_TYPE):
        connector = services.connector_add(
            collection=collection, kind=kind, name=f"{kind}-{number}", every_minutes=30,
            settings={"path": str(source), **type_settings}, credentials={"secret": SECRET} if has_secret else None,
        )  # fmt: skip
        page = client.get(edit_url(connector)).content.decode()
        assert SECRET not in page, connector.kind
        stored, secret = dict(connector.settings), bytes(connector.credentials)
        form = {k: "" if v is None else str(v) for k, v in edit_initial(connector).items()}
        response = client.post(edit_url(connector), form)
        assert response.status_code == 302, (connector.kind, response.content.decode()[-2000:])
        connector.refresh_from_db()
        assert connector.settings == stored and connector.every_minutes == 30, connector.kind
        assert bytes(connector.credentials) == secret, connector.kind
    assert len(changes()) == len(EVERY_TYPE)


def test_an_edit_while_a_sync_runs_leaves_the_runs_progress_alone(collection, source) -> None:
    # The edit's copy of the row is read before the run writes its progress (as a page
    # loaded a moment earlier, or a request that overlaps a worker's run).
    connector = folder_connector(collection, source)
    Connector.objects.filter(pk=connector.pk).update(state=Connector.State.RUNNING, seen=7, cursor="b.md")
    services.connector_change(connector=connector, settings={"exclude": ["drafts/**"]}, every_minutes=5)
    stored = Connector.objects.get(pk=connector.pk)
    assert (stored.state, stored.seen, stored.cursor) == (Connector.State.RUNNING, 7, "b.md")
    assert stored.settings["exclude"] == ["drafts/**"] and stored.every_minutes == 5
