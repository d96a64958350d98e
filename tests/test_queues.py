"""Task routing: each kind of work is published to its own queue, on the configured broker.

Runs against the broker of the test run: real Redis in the services pass, the
file-system broker on the embedded defaults. Each test publishes real messages and
takes them back from the queues with kombu, so nothing consumes them in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from assistant import celery_app, processes
from assistant.audit import tasks as audit_tasks
from ingest import claims, queue, tasks
from ingest.models import Document
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.broker import drain

pytestmark = pytest.mark.django_db


def task_ids(name: str) -> dict[str, str]:
    """Task id -> task name of the messages on queue ``name``."""
    return {m.headers["id"]: m.headers["task"] for m in drain(name)}


@pytest.fixture
def queues(settings) -> Iterator[dict[str, str]]:
    for name in settings.TASK_QUEUES.values():
        drain(name)  # what earlier tests published and nobody consumed
    yield settings.TASK_QUEUES


def where(task_id: str, names: dict[str, str]) -> list[str]:
    """The kinds of queue holding ``task_id`` (exactly one, if routing works)."""
    found = {kind: task_ids(name) for kind, name in names.items()}
    return [kind for kind, ids in found.items() if task_id in ids]


def test_the_queues_are_four_distinct_named_ones(settings) -> None:
    assert set(settings.TASK_QUEUES) == {"ingest", "index", "connectors", "default"}
    assert len(set(settings.TASK_QUEUES.values())) == 4
    assert set(celery_app.amqp.queues) == set(settings.TASK_QUEUES.values())
    assert celery_app.conf.task_default_queue == settings.TASK_QUEUES["default"]


@pytest.mark.parametrize(
    ("send", "kind"),
    [
        (lambda tid: tasks.process_document.apply_async((10**9,), task_id=tid), "ingest"),
        (lambda tid: tasks.process_documents.apply_async(([10**9, 10**9 + 1],), task_id=tid), "ingest"),
        (lambda tid: tasks.rebuild_indexes.apply_async((10**9,), task_id=tid), "index"),
        (lambda tid: celery_app.send_task("connectors.tasks.sync_source", [1], task_id=tid), "connectors"),
        (lambda tid: celery_app.send_task("acme.connectors.pull", [1], task_id=tid), "connectors"),
        (lambda tid: tasks.sweep_documents.apply_async(task_id=tid), "default"),
        (lambda tid: audit_tasks.purge_audit_events.apply_async(task_id=tid), "default"),
        (lambda tid: celery_app.send_task("something.unrouted", task_id=tid), "default"),
    ],
    ids=["document", "batch", "rebuild", "connector", "any-connectors-name", "sweep", "audit-purge", "unrouted"],
)
def test_a_published_task_lands_on_its_queue(queues, send, kind: str) -> None:
    task_id = f"routing-{uuid.uuid4()}"
    send(task_id)
    assert where(task_id, queues) == [kind]


def test_uploads_are_sent_to_the_ingest_queue(queues) -> None:
    collection = CollectionFactory.create()
    small = [DocumentFactory.create(collection=collection, name=f"n{i}.txt", content=b"note") for i in range(2)]
    queue.documents_enqueue([d.pk for d in small])
    queue.document_enqueue(small[0].pk)
    on_ingest = drain(queues["ingest"])
    assert sorted(m.headers["task"] for m in on_ingest) == [
        "ingest.tasks.process_document",
        "ingest.tasks.process_documents",
    ]
    for kind in ("index", "connectors", "default"):
        assert drain(queues[kind]) == []


def test_the_sweep_requeues_stalled_and_lost_work_onto_the_ingest_queue(settings, queues) -> None:
    collection = CollectionFactory.create()
    stalled = DocumentFactory.create(collection=collection, name="stalled.txt", content=b"one")
    lost = DocumentFactory.create(collection=collection, name="lost.txt", content=b"two")
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALL_AFTER_S + 1)
    Document.objects.filter(pk=stalled.pk).update(status=Document.Status.EMBEDDING, heartbeat_at=stale, attempts=1)
    quiet = timezone.now() - timedelta(seconds=settings.INGEST_RESEND_QUEUED_AFTER_S + 1)
    Document.objects.filter(pk=lost.pk).update(status=Document.Status.QUEUED, updated_at=quiet)

    # As beat runs it: the sweep task itself goes through the default queue's worker.
    tasks.sweep_documents.apply()

    on_ingest = drain(queues["ingest"])
    assert sorted(m.headers["argsrepr"] for m in on_ingest) == sorted(f"({pk},)" for pk in (stalled.pk, lost.pk))
    assert {m.headers["task"] for m in on_ingest} == {"ingest.tasks.process_document"}
    for kind in ("index", "connectors", "default"):
        assert drain(queues[kind]) == []
    assert claims.documents_sweep() == {"requeued": 0, "failed": 0, "resent": 0}


def test_the_embedded_worker_consumes_every_queue(settings) -> None:
    # `manage.py serve` and the tests' worker fixtures start a worker without --queues:
    # Celery then consumes every queue of task_queues.
    command = processes.worker_command()
    assert "--queues" not in command and "-Q" not in command
    assert "--beat" in command
    per_queue = processes.worker_command(queues=[settings.QUEUE_INDEX], node="index@%h", beat=False)
    assert per_queue[per_queue.index("--queues") + 1] == settings.QUEUE_INDEX
    assert "--beat" not in per_queue
