"""Small documents queued together are processed as one batch, each with its own outcome."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from ingest import embedding, index, parsers, pipeline, queue
from ingest.embedding import embed_query
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.documents import make_pdf

pytestmark = pytest.mark.django_db

Status = Document.Status

NOTES = {
    "alpha.txt": b"Alpha project\n\nThe alpha project ships the billing service in March.",
    "beta.txt": b"Beta project\n\nThe beta project migrates payroll to the new ledger.",
    "gamma.md": b"# Gamma project\n\nGamma replaces the badge readers in every office.",
    "delta.txt": b"Delta project\n\nDelta audits the vendor contracts for renewal dates.",
}


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(queue, "document_enqueue", ids.append)
    return ids


@pytest.fixture
def encode_calls(monkeypatch) -> list[int]:
    """How many texts each call into the model embedded."""
    calls: list[int] = []
    real = embedding.embed_texts

    def counting(texts, **kwargs):
        calls.append(len(texts))
        return real(texts, **kwargs)

    monkeypatch.setattr(embedding, "embed_texts", counting)
    return calls


def queued(collection, files: dict[str, bytes]) -> list[Document]:
    return [DocumentFactory.create(collection=collection, name=n, content=c) for n, c in files.items()]


def test_queued_small_documents_go_through_in_one_embedding_call(encode_calls) -> None:
    collection = CollectionFactory.create()
    documents = queued(collection, NOTES)
    pipeline.document_process(document_id=documents[0].pk)

    assert len(encode_calls) == 1
    for document in documents:
        document.refresh_from_db()
        assert document.status == Status.READY, document.error
        assert document.attempts == 1
        chunks = list(document.chunks.all())
        assert document.chunk_count == len(chunks) >= 1
        # Every chunk landed on its own document, with its own vector.
        project = document.name.split(".")[0].capitalize()
        assert all(project in c.text or project in c.heading for c in chunks), [c.text for c in chunks]
        assert set(document.timings) >= {"parse", "chunk", "embed", "index"}
    assert encode_calls == [Chunk.objects.filter(collection=collection).count()]

    hits = index.index_search(collection_id=collection.pk, vector=embed_query("badge readers in offices"), k=1)
    assert Chunk.objects.get(pk=hits[0].chunk_id).document.name == "gamma.md"


def test_a_companion_message_arriving_later_changes_nothing(encode_calls) -> None:
    collection = CollectionFactory.create()
    first, second, *_ = queued(collection, NOTES)
    pipeline.document_process(document_id=first.pk)
    before = sorted(Chunk.objects.filter(document=second).values_list("pk", flat=True))
    pipeline.document_process(document_id=second.pk)
    assert sorted(Chunk.objects.filter(document=second).values_list("pk", flat=True)) == before
    assert len(encode_calls) == 1


def test_a_broken_file_fails_alone_and_the_batch_goes_on() -> None:
    collection = CollectionFactory.create()
    documents = queued(collection, {"ok.txt": NOTES["alpha.txt"], "broken.pdf": b"%PDF-1.7\n garbage", **NOTES})
    pipeline.document_process(document_id=documents[0].pk)
    statuses = {d.name: (d.status, d.error) for d in Document.objects.filter(collection=collection)}
    assert statuses.pop("broken.pdf")[0] == Status.FAILED
    assert {s for s, _ in statuses.values()} == {Status.READY}


def test_large_files_and_other_collections_are_not_taken_along(settings) -> None:
    settings.INGEST_BATCH_MAX_BYTES = 4096
    collection, other = CollectionFactory.create(), CollectionFactory.create()
    small = queued(collection, {"small.txt": NOTES["alpha.txt"], "small2.txt": NOTES["beta.txt"]})
    big = queued(collection, {"big.pdf": make_pdf(["Budget " * 400] * 3)})[0]
    elsewhere = queued(other, {"elsewhere.txt": NOTES["gamma.md"]})[0]
    assert big.size > 4096
    pipeline.document_process(document_id=small[0].pk)
    assert Document.objects.get(pk=small[1].pk).status == Status.READY
    assert Document.objects.get(pk=big.pk).status == Status.QUEUED
    assert Document.objects.get(pk=elsewhere.pk).status == Status.QUEUED
    # The large file, processed on its own message, takes no companions either.
    pipeline.document_process(document_id=big.pk)
    assert Document.objects.get(pk=big.pk).status == Status.READY


def test_batch_size_is_limited(settings, encode_calls) -> None:
    settings.INGEST_BATCH_DOCUMENTS = 2
    collection = CollectionFactory.create()
    documents = queued(collection, NOTES)
    pipeline.document_process(document_id=documents[0].pk)
    assert [d.status for d in Document.objects.filter(collection=collection).order_by("pk")] == [
        Status.READY, Status.READY, Status.QUEUED, Status.QUEUED,
    ]  # fmt: skip


def test_a_time_limit_blames_the_file_being_parsed_and_hands_the_others_back(monkeypatch, sent) -> None:
    collection = CollectionFactory.create()
    documents = queued(collection, NOTES)
    real = parsers.parse_file

    def slow_on_gamma(path, *, name="", **options):
        if name == "gamma.md":
            raise SoftTimeLimitExceeded()
        return real(path, name=name, **options)

    monkeypatch.setattr(pipeline, "parse_file", slow_on_gamma)
    pipeline.document_process(document_id=documents[0].pk)

    by_name = {d.name: d for d in Document.objects.filter(collection=collection)}
    assert by_name["gamma.md"].status == Status.FAILED
    assert "time limit" in by_name["gamma.md"].error
    others = [by_name[n] for n in ("alpha.txt", "beta.txt", "delta.txt")]
    # The others go back to the queue with their attempt returned, each with a message.
    assert {d.status for d in others} == {Status.QUEUED}
    assert {d.attempts for d in others} == {0}
    assert sorted(sent) == sorted(d.pk for d in others)
    assert not Chunk.objects.filter(collection=collection).exists()


def test_uploads_are_sent_in_groups_and_large_files_alone(settings, monkeypatch) -> None:
    from ingest import tasks

    settings.INGEST_BATCH_DOCUMENTS = 2
    settings.INGEST_BATCH_MAX_BYTES = 4096
    groups: list[list[int]] = []
    singles: list[int] = []
    monkeypatch.setattr(tasks.process_documents, "delay", groups.append)
    monkeypatch.setattr(tasks.process_document, "delay", singles.append)
    here, there = CollectionFactory.create(), CollectionFactory.create()
    small = queued(here, NOTES)
    big = queued(here, {"big.pdf": make_pdf(["Budget " * 400] * 3)})[0]
    elsewhere = queued(there, {"elsewhere.txt": b"Elsewhere\n\nA note in another collection."})[0]

    queue.documents_enqueue([d.pk for d in [*small, big, elsewhere]])

    assert sorted(groups) == sorted([[small[0].pk, small[1].pk], [small[2].pk, small[3].pk], [elsewhere.pk]])
    assert singles == [big.pk]


def test_a_group_message_processes_its_documents_and_sends_on_what_it_cannot_take(settings, sent) -> None:
    settings.INGEST_BATCH_MAX_BYTES = 4096
    collection, other = CollectionFactory.create(), CollectionFactory.create()
    small = queued(collection, NOTES)
    elsewhere = queued(other, {"elsewhere.txt": b"Elsewhere\n\nA note in another collection."})[0]

    pipeline.documents_process(document_ids=[small[2].pk, elsewhere.pk, small[0].pk])

    assert {d.status for d in Document.objects.filter(collection=collection)} == {Status.READY}
    assert Document.objects.get(pk=elsewhere.pk).status == Status.QUEUED
    assert sent == [elsewhere.pk]  # another collection's file gets a message of its own


def test_a_text_already_embedded_in_the_collection_is_not_embedded_again(encode_calls) -> None:
    collection = CollectionFactory.create()
    shared = "Security\n\nBadges must be worn visibly at all times on company premises.\n\n"
    v1 = queued(collection, {"policy.txt": (shared + "Visitors sign in at reception.").encode()})[0]
    pipeline.document_process(document_id=v1.pk)
    assert encode_calls == [1]  # one chunk: heading and both paragraphs

    # The same text twice in one batch, and once more in a later upload: embedded once.
    twins = queued(
        collection,
        {"a.txt": b"Holidays\n\nThe office closes on May 1.", "b.txt": b"Holidays\n\nThe office closes on May 1.\n"},
    )
    pipeline.document_process(document_id=twins[0].pk)
    assert encode_calls == [1, 1]
    again = queued(collection, {"c.txt": b"Holidays\n\nThe office closes on May 1.\n\n"})[0]
    pipeline.document_process(document_id=again.pk)
    assert encode_calls == [1, 1]  # nothing left to embed
    again.refresh_from_db()
    assert again.status == Status.READY and again.chunk_count == 1
    first = Chunk.objects.get(document=twins[0])
    assert bytes(Chunk.objects.get(document=again).embedding) == bytes(first.embedding)
    hits = index.index_search(collection_id=collection.pk, vector=embed_query("When does the office close?"), k=3)
    assert {Chunk.objects.get(pk=h.chunk_id).document.name for h in hits[:3]} == {"a.txt", "b.txt", "c.txt"}
