"""The collection page's connectors section: managers only; add, state, dry run, sync now, pause, remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.connectors.models import Connector
from ingest.models import Document
from tests.connectors.conftest import folder_connector, write
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client, collection):
    user = UserFactory.create()
    collection_grant(collection=collection, user=user, role=Role.MANAGE)
    client.force_login(user)
    return user


def test_a_manager_adds_a_folder_connector_and_sees_its_state(client, manager, collection, source: Path) -> None:
    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"name": "Team share", "path": str(source), "include": "*.md\n*.pdf", "exclude": "drafts/",
         "groups": "hr/**=hr\npublic/**=*", "every": "15"},
    )  # fmt: skip
    assert response.status_code == 302
    connector = Connector.objects.get(name="Team share")
    assert connector.settings["include"] == ["*.md", "*.pdf"] and connector.every_minutes == 15
    assert connector.settings["groups"] == [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "public/**", "groups": ["*"]}]
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert 'id="connectors"' in page and "Team share" in page and str(source) in page


def test_dry_run_lists_changes_and_sync_now_queues(client, manager, collection, source: Path, settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    write(source, "a.md", "# A\n\nAlpha.")
    connector = folder_connector(collection, source)
    url = f"/portal/collections/{collection.pk}/connectors/{connector.pk}/action"
    page = client.post(url, {"action": "dry_run"}).content.decode()
    assert "a.md" in page and "added" in page and not Document.objects.exists()
    client.post(url, {"action": "pause"})
    assert Connector.objects.get(pk=connector.pk).paused
    response = client.post(url, {"action": "sync"}, follow=True)
    assert "paused" in response.content.decode()
    client.post(url, {"action": "resume"})
    client.post(url, {"action": "remove"})
    assert not Connector.objects.exists()


def test_a_writer_who_does_not_manage_sees_no_connectors_and_cannot_act(client, collection, source: Path) -> None:
    connector = folder_connector(collection, source)
    writer = UserFactory.create()
    collection_grant(collection=collection, user=writer, role=Role.WRITE)
    client.force_login(writer)
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert 'id="connectors"' not in page and connector.name not in page
    url = f"/portal/collections/{collection.pk}/connectors/{connector.pk}/action"
    assert client.post(url, {"action": "remove"}).status_code == 404
    assert client.post(f"/portal/collections/{collection.pk}/connectors/add", {"name": "x"}).status_code == 404
    assert Connector.objects.filter(pk=connector.pk).exists()
