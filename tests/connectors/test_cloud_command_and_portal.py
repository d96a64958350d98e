"""``connector add --type confluence|sharepoint`` and the portal's add forms: one path, the secret sealed."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.connectors.models import Connector
from assistant.connectors.secrets import credentials_open
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sealing_key")]

TOKEN = "atl-token-Sesame-0451"


def manage(*args: str) -> str:
    out = io.StringIO()
    call_command("connector", *args, stdout=out)
    return out.getvalue()


def test_the_command_adds_a_confluence_and_a_sharepoint_connector(collection, monkeypatch) -> None:
    monkeypatch.setenv("WIKI_TOKEN", TOKEN)
    manage("add", "--collection", collection.name, "--type", "confluence", "--name", "wiki",
           "--url", "https://example.atlassian.net/wiki/", "--space", "ENG", "--space", "HR",
           "--email", "bot@example.com", "--map", "confluence-users=*", "--map", "hr-team=hr,managers",
           "--secret-env", "WIKI_TOKEN")  # fmt: skip
    wiki = Connector.objects.get(name="wiki")
    assert wiki.kind == "confluence" and wiki.settings == {
        "base_url": "https://example.atlassian.net/wiki", "deployment": "cloud", "spaces": ["ENG", "HR"],
        "email": "bot@example.com", "groups": {"confluence-users": ["*"], "hr-team": ["hr", "managers"]},
        "attachments": True,
    }  # fmt: skip
    assert credentials_open(wiki.credentials) == {"secret": TOKEN} and TOKEN not in manage("list", "--json")

    manage("add", "--collection", collection.name, "--type", "sharepoint", "--name", "drive",
           "--tenant", "contoso.onmicrosoft.com", "--drive", "b!abc-123", "--client-id", "app-1",
           "--map", "HR Team=hr", "--secret-env", "WIKI_TOKEN")  # fmt: skip
    drive = Connector.objects.get(name="drive")
    assert drive.settings["drive_id"] == "b!abc-123" and drive.settings["groups"] == {"HR Team": ["hr"]}
    assert drive.settings["graph_url"] == "https://graph.microsoft.com/v1.0"

    with pytest.raises(CommandError, match="--email"):
        manage("add", "--collection", collection.name, "--type", "confluence", "--name", "x",
               "--url", "https://example.atlassian.net/wiki", "--space", "ENG")  # fmt: skip
    with pytest.raises(CommandError, match="--drive"):
        manage("add", "--collection", collection.name, "--type", "sharepoint", "--name", "y", "--tenant", "t",
               "--client-id", "c")  # fmt: skip


def test_a_manager_adds_a_confluence_connector_in_the_portal(client, collection) -> None:
    manager = UserFactory.create()
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    client.force_login(manager)
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert 'id="connector-add-confluence"' in page and 'id="connector-add-sharepoint"' in page
    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "confluence", "name": "Wiki", "url": "https://wiki.example.com/confluence", "deployment": "datacenter",
         "spaces": "ENG, OPS", "secret": TOKEN, "groups": "confluence-users=*\nhr-team=hr", "every": "30"},
    )  # fmt: skip
    assert response.status_code == 302
    wiki = Connector.objects.get(name="Wiki")
    assert wiki.settings["spaces"] == ["ENG", "OPS"] and wiki.settings["groups"]["hr-team"] == ["hr"]
    assert credentials_open(wiki.credentials) == {"secret": TOKEN}
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert "https://wiki.example.com/confluence" in page and "hr-team → hr" in page and TOKEN not in page

    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "sharepoint", "name": "Drive", "tenant": "contoso", "client_id": "app", "secret": "s", "every": "0"},
        follow=True,
    )
    assert "cannot be added" in response.content.decode() and not Connector.objects.filter(name="Drive").exists()


def test_a_writer_who_does_not_manage_cannot_add_one(client, collection) -> None:
    writer = UserFactory.create()
    collection_grant(collection=collection, user=writer, role=Role.WRITE)
    client.force_login(writer)
    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "sharepoint", "name": "Drive", "tenant": "t", "drive": "d", "client_id": "c", "secret": "s",
         "every": "0"},
    )  # fmt: skip
    assert response.status_code == 404 and not Connector.objects.exists()
