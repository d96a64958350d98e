"""Claiming, the sweep and versions: the rules that keep ingestion from getting stuck
or losing a document, exercised in-process on the real pipeline."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from assistant.accounts.scope import Scope
from assistant.chat.retrieval import DenseRetriever
from ingest import claims, embedding, index, indexes, pipeline, queue
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db

Status = Document.Status


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """Documents the sweep hands to the broker."""
    ids: list[int] = []
    monkeypatch.setattr(queue, "document_enqueue", ids.append)
    return ids


def upload(collection, name: str, content: bytes) -> Document:
    return DocumentFactory.create(collection=collection, name=name, content=content)


def test_a_document_another_worker_is_on_is_left_to_it() -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    Document.objects.filter(pk=document.pk).update(status=Status.PARSING, heartbeat_at=timezone.now(), attempts=1)
    pipeline.document_process(document_id=document.pk)
    document.refresh_from_db()
    assert (document.status, document.attempts, document.chunk_count) == (Status.PARSING, 1, 0)


def test_a_stalled_document_is_taken_over(settings) -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALL_AFTER_S + 1)
    Document.objects.filter(pk=document.pk).update(status=Status.EMBEDDING, heartbeat_at=stale, attempts=1)
    pipeline.document_process(document_id=document.pk)
    document.refresh_from_db()
    assert (document.status, document.attempts) == (Status.READY, 2)
    assert document.heartbeat_at is None


def test_sweep_requeues_documents_whose_worker_died(settings, sent) -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALL_AFTER_S + 1)
    Document.objects.filter(pk=document.pk).update(status=Status.EMBEDDING, heartbeat_at=stale, attempts=1)
    assert claims.documents_sweep() == {"requeued": 1, "failed": 0, "resent": 0}
    assert sent == [document.pk]
    assert Document.objects.get(pk=document.pk).status == Status.QUEUED


def test_sweep_leaves_documents_with_a_live_heartbeat_alone(sent) -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    Document.objects.filter(pk=document.pk).update(status=Status.PARSING, heartbeat_at=timezone.now(), attempts=1)
    assert claims.documents_sweep() == {"requeued": 0, "failed": 0, "resent": 0}
    assert sent == []


def test_a_document_that_keeps_killing_workers_fails_with_a_reason(settings, sent) -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    stale = timezone.now() - timedelta(seconds=settings.INGEST_STALL_AFTER_S + 1)
    Document.objects.filter(pk=document.pk).update(
        status=Status.PARSING, heartbeat_at=stale, attempts=settings.INGEST_MAX_ATTEMPTS
    )
    assert claims.documents_sweep()["failed"] == 1
    document.refresh_from_db()
    assert document.status == Status.FAILED
    assert f"interrupted {settings.INGEST_MAX_ATTEMPTS} times" in document.error
    assert sent == []


def test_queued_documents_are_resent_only_while_no_worker_is_busy(settings, sent) -> None:
    collection = CollectionFactory.create()
    waiting = upload(collection, "a.md", b"# A\n\nalpha")
    long_ago = timezone.now() - timedelta(seconds=settings.INGEST_RESEND_QUEUED_AFTER_S + 1)
    Document.objects.filter(pk=waiting.pk).update(updated_at=long_ago)
    busy = upload(collection, "b.md", b"# B\n\nbeta")
    Document.objects.filter(pk=busy.pk).update(status=Status.PARSING, heartbeat_at=timezone.now())
    assert claims.documents_sweep()["resent"] == 0  # a long queue, not a lost message
    Document.objects.filter(pk=busy.pk).update(status=Status.READY)
    assert claims.documents_sweep()["resent"] == 1
    assert sent == [waiting.pk]
    assert claims.documents_sweep()["resent"] == 0  # not again right away


def test_new_version_keeps_the_old_one_serving_until_it_is_ready() -> None:
    collection = CollectionFactory.create()
    v1 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 60 euros."]))
    pipeline.document_process(document_id=v1.pk)
    v1_path = Path(Document.objects.get(pk=v1.pk).file.path)
    v2 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 85 euros."]))
    assert v2.supersedes_id == v1.pk

    retriever = DenseRetriever(scope=Scope.of([collection.pk]))
    before = retriever.retrieve("meal allowance", k=5)
    assert [p.document_id for p in before] == [v1.pk]  # v2 not ready: v1 still answers
    pipeline.document_process(document_id=v2.pk)

    after = retriever.retrieve("meal allowance", k=5)
    assert [p.document_id for p in after] == [v2.pk]
    assert "85 euros" in after[0].text
    assert not Document.objects.filter(pk=v1.pk).exists()
    assert not v1_path.exists()
    assert index.index_size(collection.pk) == Chunk.objects.filter(collection=collection).count()


def test_a_failed_new_version_leaves_the_old_one_in_place() -> None:
    collection = CollectionFactory.create()
    v1 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 60 euros."]))
    pipeline.document_process(document_id=v1.pk)
    v2 = upload(collection, "policy.pdf", b"%PDF-1.7 broken")
    pipeline.document_process(document_id=v2.pk)
    assert Document.objects.get(pk=v2.pk).status == Status.FAILED
    assert Document.objects.get(pk=v1.pk).status == Status.READY
    assert DenseRetriever(scope=Scope.of([collection.pk])).retrieve("meal allowance", k=5)[0].document_id == v1.pk


def test_a_version_overtaken_before_it_was_processed_leaves_no_older_one_serving() -> None:
    """v3 came while v2 waited (a sync killed before v2's message was sent): v3 replaces both."""
    collection = CollectionFactory.create()
    v1 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 60 euros."]))
    pipeline.document_process(document_id=v1.pk)
    v1_path = Path(Document.objects.get(pk=v1.pk).file.path)
    v2 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 85 euros."]))
    v3 = upload(collection, "policy.pdf", make_pdf(["Travel\nThe meal allowance is 90 euros."]))
    assert (v2.supersedes_id, v3.supersedes_id) == (v1.pk, v2.pk)

    pipeline.document_process(document_id=v3.pk, companions=False)  # v2's message is not there yet
    after = DenseRetriever(scope=Scope.of([collection.pk])).retrieve("meal allowance", k=5)
    assert [p.document_id for p in after] == [v3.pk]
    assert list(Document.objects.filter(collection=collection).values_list("pk", flat=True)) == [v3.pk]
    assert not v1_path.exists()
    assert index.index_size(collection.pk) == Chunk.objects.filter(collection=collection).count()
    pipeline.document_process(document_id=v2.pk)  # its late message finds nothing to do
    assert list(Document.objects.filter(collection=collection).values_list("pk", flat=True)) == [v3.pk]


def test_progress_counts_embedded_chunks() -> None:
    document = upload(CollectionFactory.create(), "h.pdf", make_pdf(HANDBOOK_PAGES))
    pipeline.document_process(document_id=document.pk)
    document.refresh_from_db()
    assert document.progress_total == document.progress_done == document.chunk_count > 0
    assert set(document.timings) == {"parse", "chunk", "embed", "index"}


def test_reindex_re_embeds_every_chunk_and_swaps_the_index() -> None:
    collection = CollectionFactory.create()
    document = upload(collection, "h.pdf", make_pdf(HANDBOOK_PAGES))
    pipeline.document_process(document_id=document.pk)
    # Vectors from an older, useless model, in the database and in the index.
    Chunk.objects.filter(collection=collection).update(embedding=bytes(384 * 4))
    indexes.indexes_rebuild(collection_id=collection.pk)
    retriever = DenseRetriever(scope=Scope.of([collection.pk]))
    assert retriever.retrieve("meal allowance abroad", k=1)[0].score == 0
    assert indexes.collection_reindex(collection_id=collection.pk) == document.chunks.count()
    assert all(any(bytes(c.embedding)) for c in Chunk.objects.filter(collection=collection))
    top = retriever.retrieve("meal allowance abroad", k=1)[0]
    assert top.page_start == 2
    assert top.score > 0.3
    assert index.index_size(collection.pk) == document.chunks.count()


def test_a_transient_database_error_requeues_without_using_up_an_attempt(monkeypatch, sent) -> None:
    from django.db import OperationalError

    collection = CollectionFactory.create()
    document = upload(collection, "h.pdf", make_pdf(HANDBOOK_PAGES))
    companion = upload(collection, "note.txt", b"Parking\n\nVisitors park on level two.")

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(embedding, "embed_texts", database_gone)
    with pytest.raises(OperationalError):  # re-raised for the task's retry with backoff
        pipeline.document_process(document_id=document.pk)
    for claimed in (document, companion):
        claimed.refresh_from_db()
        assert (claimed.status, claimed.attempts) == (Status.QUEUED, 0)
    # The task's own document comes back with its retry; the companion gets a message.
    assert sent == [companion.pk]
