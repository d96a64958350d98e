"""One ingest id from the upload request through the document's task to the tasks of the files inside it.

The upload goes through the portal as a browser sends it; its messages are published
to the test run's broker (Redis, or the file-system broker) and taken off the queue
again here, then run as a worker runs them: the task with the message's own headers.
"""

from __future__ import annotations

import io
import logging
import zipfile
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from assistant import celery_app
from assistant.ops.logs import ContextFilter
from ingest.models import Document
from tests.factories import CollectionFactory, UserFactory
from tests.support.broker import drain

# Committed for real, as in production: the messages are sent when the upload's (and
# the task's) transaction commits, while the request's (or the task's) ids are set.
pytestmark = pytest.mark.django_db(transaction=True)


def run_as_a_worker(message: Any) -> None:
    """The message's task, run here with the message's headers (what a worker puts on the task's request)."""
    args, kwargs, _ = message.decode()
    celery_app.tasks[message.headers["task"]].apply(args=args, kwargs=kwargs, headers=dict(message.headers))


def documents_of(message: Any) -> list[int]:
    args, _, _ = message.decode()
    return args[0] if isinstance(args[0], list) else [args[0]]


def archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def ingest_queue(settings) -> str:
    name = settings.TASK_QUEUES["ingest"]
    drain(name)  # what earlier tests published and nobody consumed
    return name


def test_an_uploads_ingest_id_follows_it_into_its_task_and_its_members_tasks(client, caplog, ingest_queue) -> None:
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO)
    collection = CollectionFactory.create()
    client.force_login(UserFactory.create(is_superuser=True))

    def upload(name: str, data: bytes, request_id: str) -> None:
        response = client.post(
            reverse("portal:upload", args=[collection.pk]),
            {"files": [SimpleUploadedFile(name, data)]},
            HTTP_ACCEPT="application/json",
            HTTP_X_REQUEST_ID=request_id,
        )
        assert response.status_code == 200 and response.json()["outcomes"][0]["outcome"] == "accepted"

    members = {"rooms.md": b"# Rooms\n\nThe archive room is on the third floor.\n"}
    upload("bundle.zip", archive(members), "upload-bundle-0001")
    upload("other.md", b"# Other\n\nAn unrelated upload.\n", "upload-other-0001")
    bundle = Document.objects.get(name="bundle.zip")

    published = drain(ingest_queue)
    (sent,) = [m for m in published if bundle.pk in documents_of(m)]
    (other,) = [m for m in published if m is not sent]
    ingest_id = sent.headers["ingest_id"]
    assert ingest_id and other.headers["ingest_id"] != ingest_id  # each upload its own
    assert sent.headers["request_id"] == "upload-bundle-0001"
    (enqueued,) = [
        r for r in caplog.records if r.getMessage().startswith("enqueued") and r.request_id == "upload-bundle-0001"
    ]
    assert enqueued.ingest_id == ingest_id  # the upload request's own log line

    caplog.clear()
    run_as_a_worker(sent)
    assert Document.objects.get(pk=bundle.pk).status == Document.Status.READY
    child = Document.objects.get(parent=bundle)
    (child_message,) = drain(ingest_queue)
    assert documents_of(child_message) == [child.pk]
    assert child_message.headers["ingest_id"] == ingest_id
    run_as_a_worker(child_message)
    assert Document.objects.get(pk=child.pk).status == Document.Status.READY

    ready = [r for r in caplog.records if r.getMessage().startswith("Documents ready")]
    assert len(ready) == 2  # the archive's task, then its member's
    assert [r.message for r in caplog.records if r.getMessage().startswith("enqueued")]  # the member was sent
    # Every line either task wrote carries the upload's ingest id and request id, and no other.
    assert {r.ingest_id for r in caplog.records} == {ingest_id}
    assert {r.request_id for r in caplog.records} == {"upload-bundle-0001"}
