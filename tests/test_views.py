"""Pages and endpoints through Django's test client."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services as chat_services
from ingest import pipeline
from ingest import services as ingest_services
from ingest.models import Document
from tests.factories import CollectionFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory.create(is_staff=True)
    client.force_login(user)
    return user


def test_pages_require_sign_in(client) -> None:
    for url in (reverse("chat:home"), reverse("portal:home")):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith(reverse("login"))


def test_healthz_checks_the_database(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_staff_creates_a_collection_and_uploads_several_files(client, staff) -> None:
    response = client.post(reverse("portal:home"), {"name": "Policies", "description": ""})
    assert response.status_code == 302
    collection_url = response.headers["Location"]
    match = re.search(r"/collections/(\d+)/", collection_url)
    assert match, collection_url
    collection_id = int(match.group(1))
    files = [
        SimpleUploadedFile("a.pdf", make_pdf(["Alpha"])),
        SimpleUploadedFile("b.md", b"# B\n\nBeta text."),
        SimpleUploadedFile("a-again.pdf", make_pdf(["Alpha"])),
    ]
    response = client.post(reverse("portal:upload", args=[collection_id]), {"files": files}, follow=True)
    assert response.status_code == 200
    assert "already in this collection" in response.content.decode()
    status = client.get(reverse("portal:documents_status", args=[collection_id])).json()
    assert sorted(d["name"] for d in status["documents"]) == ["a.pdf", "b.md"]
    assert {d["status"] for d in status["documents"]} == {"queued"}
    assert status["summary"]["queued"] == 2


def test_every_pages_browser_title_is_plain_text(client) -> None:
    # The collections page once ran its title block over a whole section of markup.
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    for url in (reverse("chat:home"), reverse("portal:home"), reverse("accounts:tokens")):
        title = re.search(r"<title>(.*?)</title>", client.get(url).content.decode(), re.DOTALL)
        assert title, url
        assert "<" not in title.group(1) and "\n" not in title.group(1), (url, title.group(1))


def test_duplicate_collection_name_is_a_form_error(client, staff) -> None:
    CollectionFactory.create(name="Policies")
    response = client.post(reverse("portal:home"), {"name": "Policies"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_non_staff_cannot_create_collections(client) -> None:
    client.force_login(UserFactory.create())
    assert client.post(reverse("portal:home"), {"name": "Mine"}).status_code == 403


def test_reader_cannot_see_or_change_a_collections_documents(client) -> None:
    collection = CollectionFactory.create()
    reader = UserFactory.create()
    CollectionGrant.objects.create(collection=collection, user=reader, role=Role.READ)
    client.force_login(reader)
    # Not found, as for a collection that does not exist: the portal reveals nothing.
    assert client.get(reverse("portal:collection", args=[collection.pk])).status_code == 404
    assert client.get(reverse("portal:documents_status", args=[collection.pk])).status_code == 404
    upload = {"files": [SimpleUploadedFile("x.md", b"# x")]}
    assert client.post(reverse("portal:upload", args=[collection.pk]), upload).status_code == 404
    assert not Document.objects.exists()


def test_chat_home_lists_only_readable_collections(client) -> None:
    mine, theirs = CollectionFactory.create(name="Mine"), CollectionFactory.create(name="Theirs")
    user = UserFactory.create()
    CollectionGrant.objects.create(collection=mine, user=user, role=Role.READ)
    client.force_login(user)
    page = client.get(reverse("chat:home")).content.decode()
    assert "Mine" in page and "Theirs" not in page
    assert client.post(reverse("chat:new"), {"collection": theirs.pk}).status_code == 404


def test_someone_elses_conversation_is_not_found(client) -> None:
    collection = CollectionFactory.create()
    owner = UserFactory.create(is_superuser=True)
    conversation = chat_services.conversation_start(user=owner, collection=collection)
    client.force_login(UserFactory.create(is_superuser=True))
    assert client.get(reverse("chat:conversation", args=[conversation.pk])).status_code == 404
    assert client.post(reverse("chat:ask", args=[conversation.pk]), {"question": "hi"}).status_code == 404


def test_pages_load_nothing_from_outside(client, staff) -> None:
    collection = CollectionFactory.create(created_by=staff)
    conversation = chat_services.conversation_start(user=staff, collection=collection)
    for url in (
        reverse("chat:home"),
        reverse("portal:home"),
        reverse("portal:collection", args=[collection.pk]),
        reverse("chat:conversation", args=[conversation.pk]),
    ):
        html = client.get(url).content.decode()
        external = re.findall(r"""(?:src|href)=["']((?:https?:)?//[^"']+)""", html)
        assert external == [], (url, external)


@pytest.mark.django_db(transaction=True)
def test_ask_streams_server_sent_events(llm) -> None:
    user = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create()
    result = ingest_services.document_upload(
        collection=collection, name="handbook.pdf", fileobj=io.BytesIO(make_pdf(HANDBOOK_PAGES)), enqueue=False
    )
    pipeline.document_process(document_id=result.document.pk)
    conversation = chat_services.conversation_start(user=user, collection=collection)

    async def run() -> list[dict]:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(reverse("chat:ask", args=[conversation.pk]), {"question": "Meal allowance?"})
        assert response["Content-Type"] == "text/event-stream"
        assert isinstance(response, StreamingHttpResponse)
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]

    from asgiref.sync import async_to_sync

    events = async_to_sync(run)()
    assert events[0]["event"] == "sources"
    assert events[0]["citations"][0]["page"] == 2
    assert sum(e["event"] == "token" for e in events) > 1
    assert events[-1]["event"] == "done"
    assert events[-1]["model"] == llm.model
