"""The portal's web/WebDAV add form and the live progress of a sync: managers only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.connectors.models import Connector
from assistant.connectors.secrets import credentials_open, new_key
from tests.connectors.conftest import folder_connector, run, write
from tests.connectors.intranet import Server, Site, intranet
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(collection):
    manager, reader = UserFactory.create(), UserFactory.create()
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    collection_grant(collection=collection, user=reader, role=Role.READ)
    return {"manager": manager, "reader": reader}


@pytest.fixture
def site() -> Iterator[Server]:
    server = Server(Site())
    intranet(server.site, "http://127.0.0.1:9")
    yield server
    server.close()


def test_progress_shows_a_running_sync_to_managers_only(client, collection, people, source: Path) -> None:
    write(source, "a.md", "# A\n\nThe first file.")
    write(source, "b.md", "# B\n\nThe second file.")
    connector = folder_connector(collection, source, groups=[{"glob": "**", "groups": ["*"]}])
    url = f"/portal/collections/{collection.pk}/connectors/progress.json"

    # What a run writes as it goes (``sync._Run._write_progress``), read back while it runs.
    Connector.objects.filter(pk=connector.pk).update(
        state=Connector.State.RUNNING, seen=7, fetched=3, failed=1, cursor="team/c.md"
    )
    client.force_login(people["manager"])
    rows = client.get(url).json()["connectors"]
    assert [(r["name"], r["state"], r["seen"], r["fetched"], r["failed"], r["cursor"]) for r in rows] == [
        (connector.name, "running", 7, 3, 1, "team/c.md")
    ]
    Connector.objects.filter(pk=connector.pk).update(state=Connector.State.IDLE)
    run(connector)
    (row,) = client.get(url).json()["connectors"]
    assert (row["state"], row["seen"], row["fetched"], row["failed"], row["cursor"]) == ("idle", 2, 2, 0, "")
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert "connectors.js" in page and 'data-field="fetched"' in page and "progress.json" in page

    # A reader of the same collection (who sees its documents) learns nothing about its connectors.
    client.force_login(people["reader"])
    assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302


def test_a_manager_adds_web_and_webdav_connectors_from_the_portal(client, collection, people, site, settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()
    client.force_login(people["manager"])
    response = client.post(f"/portal/collections/{collection.pk}/connectors/add-http", {
        "name": "Intranet", "kind": "web", "urls": site.url + "/", "sitemap": "", "depth": "1", "max_pages": "100",
        "username": "", "secret": "", "include": "", "exclude": "people/**", "groups": "hr/**=hr\n**=*",
        "every": "30",
    })  # fmt: skip
    assert response.status_code == 302
    web = Connector.objects.get(name="Intranet")
    assert web.kind == "web" and web.settings["start_urls"] == [site.url + "/"] and web.settings["depth"] == 1
    assert web.settings["exclude"] == ["people/**"] and web.every_minutes == 30

    client.post(f"/portal/collections/{collection.pk}/connectors/add-http", {
        "name": "Cloud", "kind": "webdav", "urls": "https://cloud.example.com/remote.php/dav/files/alice/Shared",
        "depth": "2", "max_pages": "1000", "username": "alice", "secret": "app-token-123", "every": "0",
    })  # fmt: skip
    dav = Connector.objects.get(name="Cloud")
    assert dav.settings["url"].endswith("/Shared/") and dav.settings["username"] == "alice"
    assert credentials_open(dav.credentials) == {"secret": "app-token-123"}
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert "app-token-123" not in page and "Cloud" in page and site.url in page

    # A reader cannot add one.
    client.force_login(people["reader"])
    denied = client.post(f"/portal/collections/{collection.pk}/connectors/add-http", {
        "name": "Sneaky", "kind": "web", "urls": site.url + "/", "depth": "1", "max_pages": "5", "every": "0",
    })  # fmt: skip
    assert denied.status_code == 404 and not Connector.objects.filter(name="Sneaky").exists()
