from __future__ import annotations

import io
from pathlib import Path

import pytest

from assistant.celery import app as celery_app
from ingest import index, indexes, pipeline, services
from ingest.embedding import embed_query
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db


def upload(collection, name: str, content: bytes, **kwargs) -> services.UploadResult:
    return services.document_upload(collection=collection, name=name, fileobj=io.BytesIO(content), **kwargs)


def ingested(collection, name: str = "handbook.pdf", content: bytes | None = None) -> Document:
    result = upload(collection, name, make_pdf(HANDBOOK_PAGES) if content is None else content, enqueue=False)
    pipeline.document_process(document_id=result.document.pk)
    result.document.refresh_from_db()
    return result.document


def search_ids(collection_id: int, text: str) -> list[int]:
    return [h.chunk_id for h in index.index_search(collection_id=collection_id, vector=embed_query(text), k=50)]


def test_pdf_becomes_ready_with_paged_chunks_in_db_and_index() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    assert document.status == Document.Status.READY
    assert (document.file_type, document.pages, document.error) == ("pdf", 3, "")
    chunks = list(document.chunks.all())
    assert document.chunk_count == len(chunks) >= 3
    assert {c.page_start for c in chunks} == {1, 2, 3}
    assert sorted(search_ids(collection.pk, "meal allowance")) == sorted(c.pk for c in chunks)
    assert len(bytes(chunks[0].embedding)) == 384 * 4


def test_same_bytes_twice_is_one_document() -> None:
    collection = CollectionFactory.create()
    first = upload(collection, "a.pdf", make_pdf(["Alpha"]), enqueue=False)
    second = upload(collection, "copy-of-a.pdf", make_pdf(["Alpha"]), enqueue=False)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.document.pk == first.document.pk
    assert Document.objects.filter(collection=collection).count() == 1


def test_same_bytes_in_another_collection_is_a_new_document() -> None:
    content = make_pdf(["Alpha"])
    a = upload(CollectionFactory.create(), "a.pdf", content, enqueue=False)
    b = upload(CollectionFactory.create(), "a.pdf", content, enqueue=False)
    assert not b.duplicate and a.document.pk != b.document.pk


def test_processing_again_leaves_exactly_one_set_of_chunks() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    first_ids = set(document.chunks.values_list("id", flat=True))
    # A redelivered task (the worker died after finishing but before acking) runs again.
    Document.objects.filter(pk=document.pk).update(status=Document.Status.QUEUED)
    pipeline.document_process(document_id=document.pk)
    second_ids = set(Chunk.objects.filter(document=document).values_list("id", flat=True))
    assert len(second_ids) == len(first_ids)
    assert index.index_size(collection.pk) == len(second_ids)
    assert not first_ids & set(search_ids(collection.pk, "meal allowance")) - second_ids


def test_processing_a_ready_document_changes_nothing() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    before = list(document.chunks.values_list("id", flat=True))
    pipeline.document_process(document_id=document.pk)
    assert list(document.chunks.values_list("id", flat=True)) == before


def test_processing_a_deleted_document_is_a_quiet_no_op() -> None:
    pipeline.document_process(document_id=987654)


def test_bad_file_fails_with_reason_and_no_chunks() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection, "empty.txt", b"")
    assert document.status == Document.Status.FAILED
    assert document.error == "The file is empty."
    assert document.chunks.count() == 0
    assert document.finished_at is not None


def test_upload_over_the_limit_is_refused_and_nothing_is_stored(settings) -> None:
    settings.MAX_UPLOAD_BYTES = 1024
    collection = CollectionFactory.create()
    with pytest.raises(services.UploadRejected, match="upload limit"):
        upload(collection, "big.txt", b"x" * 4096)
    assert not Document.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_upload_is_queued_only_after_commit(django_capture_on_commit_callbacks, monkeypatch) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    collection = CollectionFactory.create()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = upload(collection, "handbook.pdf", make_pdf(HANDBOOK_PAGES))
    assert len(callbacks) == 1
    assert Document.objects.get(pk=result.document.pk).status == Document.Status.QUEUED
    callbacks[0]()  # the commit happens: the (eager) task runs the pipeline
    assert Document.objects.get(pk=result.document.pk).status == Document.Status.READY


def test_deleted_document_is_gone_from_disk_database_and_index() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    path = Path(document.file.path)
    chunk_ids = set(document.chunks.values_list("id", flat=True))
    assert path.exists()
    services.document_delete(document=document)
    assert not path.exists()
    assert not Chunk.objects.filter(pk__in=chunk_ids).exists()
    assert not chunk_ids & set(search_ids(collection.pk, "meal allowance"))


def test_index_rebuilds_from_the_database_alone() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    expected = search_ids(collection.pk, "meal allowance")
    index.index_path(collection.pk).unlink()
    assert indexes.indexes_rebuild(collection_id=collection.pk) == document.chunk_count
    assert search_ids(collection.pk, "meal allowance") == expected


def test_collection_delete_removes_files_and_index() -> None:
    collection = CollectionFactory.create()
    document = ingested(collection)
    path = Path(document.file.path)
    services.collection_delete(collection=collection)
    assert not path.exists()
    assert not index.index_path(collection.pk).exists()


def test_archive_members_and_attachments_become_linked_documents(formats_dir: Path) -> None:
    collection = CollectionFactory.create()
    for name in ("simple.zip", "fake-email-attachment.eml"):
        parent = upload(collection, name, (formats_dir / name).read_bytes(), enqueue=False).document
        pipeline.document_process(document_id=parent.pk, enqueue_children=False)
        parent.refresh_from_db()
        assert parent.status == Document.Status.READY, parent.error
        children = list(parent.children.all())
        assert children, name
        for child in children:
            assert child.status == Document.Status.QUEUED
            pipeline.document_process(document_id=child.pk)
            child.refresh_from_db()
            assert child.status == Document.Status.READY, child.error
            assert child.chunk_count > 0
    names = set(Document.objects.filter(parent__isnull=False).values_list("name", flat=True))
    assert {"stanley-cups.csv", "fake-attachment.txt"} <= names
