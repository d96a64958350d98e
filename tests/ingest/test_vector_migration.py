"""``manage.py vectors migrate|drop|status`` with FAISS alone (the embedded pass: SQLite, no pgvector).

The moves between FAISS and pgvector are tested on real pgvector in
``test_pgvector_store.py``; here the catch-up and the refusals every instance can run.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from ingest import index
from ingest import services as ingest
from ingest.embedding import from_bytes, to_bytes
from ingest.models import Chunk, Collection, Document
from ingest.vector_store import vector_store
from tests.factories import CollectionFactory, DocumentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _faiss(settings) -> None:
    settings.VECTOR_STORE = "faiss"


def upload(collection: Collection, name: str, text: str) -> Document:
    return DocumentFactory.create(collection=collection, name=name, content=text.encode(), processed=True)


def ready_ids(collection: Collection) -> set[int]:
    return set(
        Chunk.objects.filter(collection=collection, document__status=Document.Status.READY).values_list("pk", flat=True)
    )


def test_a_catch_up_adds_what_faiss_lacks_and_removes_what_the_database_no_longer_has(monkeypatch, capsys) -> None:
    company = CollectionFactory.create(name="Company")
    handbook = upload(company, "handbook.txt", "Travel meal allowance abroad is 60 euros per day.")
    obsolete = upload(company, "obsolete.txt", "The old canteen voucher scheme ends in March.")
    lacking = list(handbook.chunks.values_list("pk", flat=True))
    vector_store().remove(collection_id=company.pk, ids=lacking)
    gone = set(obsolete.chunks.values_list("pk", flat=True))
    with transaction.atomic():
        ingest.document_retire(document=obsolete)  # the rows go; the files keep its entries
    held = vector_store().chunk_ids(collection_id=company.pk)
    assert gone <= held.present and not set(lacking) & held.present

    def refuse(*args, **kwargs):
        raise AssertionError("a catch-up must not embed anything")

    monkeypatch.setattr("ingest.embedding.embed_texts", refuse)
    call_command("vectors", "status")
    assert "faiss (in use) differs from the database" in capsys.readouterr().out
    call_command("vectors", "migrate", "--to", "faiss")

    out = capsys.readouterr().out
    assert f"Company: faiss holds {len(lacking)} passages ({len(lacking)} added, {len(gone)} removed)" in out
    held = vector_store().chunk_ids(collection_id=company.pk)
    assert held.complete == held.present == ready_ids(company) == set(lacking)
    assert index.index_ids(company.pk) == set(lacking)
    call_command("vectors", "status")
    out = capsys.readouterr().out
    assert f"Company: faiss {len(lacking)} (in step), pgvector not set up" in out
    assert "faiss (in use) agrees with the database." in out
    assert "pgvector (idle) holds nothing." in out


def test_drop_refuses_the_engine_in_use() -> None:
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", "Travel meal allowance abroad is 60 euros per day.")
    held = vector_store().chunk_ids(collection_id=company.pk)
    assert held.complete

    with pytest.raises(CommandError, match="VECTOR_STORE=faiss"):
        call_command("vectors", "drop", "--engine", "faiss")

    assert index.index_path(company.pk).exists()
    assert vector_store().chunk_ids(collection_id=company.pk) == held


def test_drop_removes_the_files_of_collections_deleted_while_faiss_was_idle(settings) -> None:
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", "Travel meal allowance abroad is 60 euros per day.")
    files = sorted(p.name for p in index.index_path(company.pk).parent.glob(f"collection-{company.pk}.*"))
    assert {f"collection-{company.pk}.faiss", f"collection-{company.pk}.bm25.npz"} <= set(files)
    Collection.objects.filter(pk=company.pk).delete()  # the other engine was in use: the files stayed
    settings.VECTOR_STORE = "pgvector"

    call_command("vectors", "drop", "--engine", "faiss")

    assert not index.index_path(company.pk).exists()
    assert not [p for p in index.index_path(company.pk).parent.glob("collection-*") if p.suffix != ".lock"]


@pytest.mark.skipif(
    "postgresql" not in django_settings.DATABASES["default"]["ENGINE"], reason="waits on row locks: PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_a_catch_up_waits_for_a_document_being_stored_instead_of_removing_its_passages() -> None:
    """A writer puts a document's entries in FAISS, then commits: in between they are not in the database yet."""
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", "Travel meal allowance abroad is 60 euros per day.")
    arriving = DocumentFactory.create(collection=company, name="late.txt", content=b"late")  # queued, committed
    vector = from_bytes(Chunk.objects.filter(collection=company).values_list("embedding", flat=True)[0])
    written, release = threading.Event(), threading.Event()
    stored: dict[str, int] = {}
    failed: list[BaseException] = []

    def store() -> None:  # as the pipeline does: the row lock, the chunks, the entries, the commit
        try:
            with transaction.atomic():
                Document.objects.select_for_update().get(pk=arriving.pk)
                chunk = Chunk.objects.create(
                    document=arriving, collection=company, ordinal=0, text="late", embedding=to_bytes(vector)
                )
                vector_store().upsert(collection_id=company.pk, ids=[chunk.pk], vectors=vector[None, :], texts=["late"])
                Document.objects.filter(pk=arriving.pk).update(status=Document.Status.READY)
                stored["chunk"] = chunk.pk
                written.set()
                release.wait(120)
        except BaseException as exc:
            failed.append(exc)
            written.set()
        finally:
            connection.close()

    def catch_up() -> None:
        try:
            call_command("vectors", "migrate", "--to", "faiss", stdout=io.StringIO())
        except BaseException as exc:
            failed.append(exc)
        finally:
            connection.close()

    writer, catcher = threading.Thread(target=store), threading.Thread(target=catch_up)
    writer.start()
    assert written.wait(120) and not failed
    assert stored["chunk"] in vector_store().chunk_ids(collection_id=company.pk).present  # not committed yet
    catcher.start()
    try:
        # The catch-up must now be waiting for the writer's row lock; it holds nothing else.
        deadline = time.monotonic() + 120
        while not _someone_waits_for_a_lock():
            assert catcher.is_alive() and time.monotonic() < deadline, "the catch-up did not wait for the writer"
            time.sleep(0.05)
    finally:
        release.set()
        writer.join()
        catcher.join()
    assert not failed
    held = vector_store().chunk_ids(collection_id=company.pk)
    assert stored["chunk"] in held.complete
    assert held.complete == held.present == ready_ids(company)


def _someone_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        return bool(cursor.fetchone()[0])
