"""Celery task runs: timed, failures counted, an ingest id on every log line of a document's task."""

from __future__ import annotations

import io
import logging

import pytest
from prometheus_client import REGISTRY

from assistant import celery_app
from ingest import services as ingest_services
from ingest import tasks

pytestmark = pytest.mark.django_db


@celery_app.task(name="tests.ops.fails")
def fails() -> None:
    raise LookupError("nothing here")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_task_run_is_timed() -> None:
    before = _value("assistant_task_duration_seconds_count", task="ingest.tasks.sweep_documents", state="success")
    tasks.sweep_documents.apply()
    after = _value("assistant_task_duration_seconds_count", task="ingest.tasks.sweep_documents", state="success")
    assert after == before + 1


def test_a_failed_task_is_counted_with_its_exception() -> None:
    before = _value("assistant_task_failures_total", task="tests.ops.fails", exception="LookupError")
    result = fails.apply()
    assert result.failed()
    assert _value("assistant_task_failures_total", task="tests.ops.fails", exception="LookupError") == before + 1
    assert _value("assistant_task_duration_seconds_count", task="tests.ops.fails", state="failure") >= 1


@pytest.fixture
def records():
    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    from assistant.ops.logs import ContextFilter

    handler = Keep()
    handler.addFilter(ContextFilter())
    logging.getLogger("ingest").addHandler(handler)
    try:
        yield handler.records
    finally:
        logging.getLogger("ingest").removeHandler(handler)


def test_a_documents_task_logs_under_the_ingest_id_its_message_carried(records) -> None:
    from tests.factories import CollectionFactory

    upload = ingest_services.document_upload(
        collection=CollectionFactory.create(), name="notes.md", fileobj=io.BytesIO(b"# Notes\n\nText."), enqueue=False
    )
    tasks.process_document.apply(args=[upload.document.pk], headers={"ingest_id": "ingest-0042-feed"})
    ready = [r for r in records if r.getMessage().startswith("Documents ready")]
    assert ready and all(r.ingest_id == "ingest-0042-feed" for r in ready)


def test_a_documents_task_run_without_one_gets_its_own(records) -> None:
    from tests.factories import CollectionFactory

    upload = ingest_services.document_upload(
        collection=CollectionFactory.create(), name="notes.md", fileobj=io.BytesIO(b"# Notes\n\nText."), enqueue=False
    )
    tasks.process_document.apply(args=[upload.document.pk])
    ready = [r for r in records if r.getMessage().startswith("Documents ready")]
    assert ready and ready[0].ingest_id
