"""The lexical (BM25) index: a cache of the chunks' indexed text, kept in step with FAISS."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import index, indexes, lexical
from ingest import services as ingest_services
from ingest.chunking import HEADING_SEPARATOR, document_title, indexed_text
from ingest.models import Chunk, Document
from ingest.parsers.base import Element
from tests.factories import CollectionFactory, DocumentFactory


def test_search_ranks_by_bm25_and_stems_words() -> None:
    lexical.lexical_replace(
        collection_id=1,
        ids=[10, 11, 12],
        texts=[
            "Vaccination schedules for infants and children.",
            "The quarterly budget of the marketing department.",
            "Children vaccinated against measles develop immunity.",
        ],
    )
    hits = lexical.lexical_search(collection_id=1, query="vaccinating children", k=5)
    # "vaccinating", "vaccination" and "vaccinated" share one stem.
    assert {h.chunk_id for h in hits} == {10, 12}
    assert 11 not in {h.chunk_id for h in hits}  # shares no word: never a hit
    assert all(h.score > 0 for h in hits)


def test_excluded_chunks_never_take_a_place() -> None:
    lexical.lexical_replace(collection_id=1, ids=[1, 2, 3], texts=["alpha gamma delta", "alpha beta", "beta"])
    best = lexical.lexical_search(collection_id=1, query="alpha beta", k=1)
    assert [h.chunk_id for h in best] == [2]
    hidden = lexical.lexical_search(collection_id=1, query="alpha beta", k=1, exclude=[2])
    assert [h.chunk_id for h in hidden] == [3]
    assert 2 not in {h.chunk_id for h in lexical.lexical_search(collection_id=1, query="alpha beta", k=3, exclude=[2])}


def test_upsert_and_remove_keep_the_index_in_step() -> None:
    lexical.lexical_upsert(collection_id=1, ids=[1, 2], texts=["red apples", "green pears"])
    lexical.lexical_upsert(collection_id=1, ids=[3], texts=["red cherries"], remove=[1])
    assert lexical.lexical_ids(1) == {2, 3}
    assert [h.chunk_id for h in lexical.lexical_search(collection_id=1, query="red", k=5)] == [3]
    # The same id written again replaces its text instead of adding a copy.
    lexical.lexical_upsert(collection_id=1, ids=[3], texts=["blue plums"])
    assert lexical.lexical_size(1) == 2
    assert lexical.lexical_search(collection_id=1, query="red", k=5) == []
    lexical.lexical_remove(collection_id=1, ids=[2, 3])
    assert lexical.lexical_size(1) == 0
    assert lexical.lexical_search(collection_id=1, query="pears", k=5) == []


def test_readers_reload_only_when_the_file_changes() -> None:
    lexical.lexical_replace(collection_id=1, ids=[1], texts=["one"])
    first = lexical.lexical_load(1)
    assert lexical.lexical_load(1) is first  # cached: nothing rebuilt per query
    lexical.lexical_upsert(collection_id=1, ids=[2], texts=["two"])
    second = lexical.lexical_load(1)
    assert second is not first
    assert second is not None and second.size == 2


def test_write_leaves_no_temporary_file(settings) -> None:
    lexical.lexical_replace(collection_id=1, ids=[1], texts=["one"])
    names = [p.name for p in Path(settings.INDEX_DIR).iterdir()]
    assert "collection-1.bm25.npz" in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_mismatched_ids_and_texts_are_refused() -> None:
    with pytest.raises(ValueError):
        lexical.lexical_upsert(collection_id=1, ids=[1, 2], texts=["one"])


def test_indexed_text_carries_context_and_heading_once() -> None:
    assert indexed_text(context="Annual report", heading="Risks", text="Currency moves.") == (
        "Annual report\nRisks\nCurrency moves."
    )
    # A heading that is the context, and a text that opens with its heading, are not repeated.
    assert indexed_text(context="Annual report", heading="Annual report", text="Annual report\nIntro") == (
        "Annual report\nIntro"
    )
    # A heading of several titles is not repeated before a text that opens with them, line by line.
    heading = f"ACME Inc{HEADING_SEPARATOR}Balance sheet"
    assert indexed_text(context="ACME 2023", heading=heading, text="ACME Inc\nBalance sheet\nCash") == (
        "ACME 2023\nACME Inc\nBalance sheet\nCash"
    )
    assert document_title([Element(text="Body"), Element(text="Q3 Review", kind="title")], name="x.pdf") == "Q3 Review"
    assert document_title([Element(text="Body")], name="travel_policy-2024.docx") == "travel policy 2024"


# --- kept in step with the database by the ingestion services ----------------------------


def _upload(collection, name: str, text: str) -> Document:
    return DocumentFactory.create(collection=collection, name=name, content=text, processed=True)


def _ready_chunk_ids(collection) -> set[int]:
    return set(
        Chunk.objects.filter(collection=collection, document__status=Document.Status.READY).values_list("id", flat=True)
    )


@pytest.mark.django_db
def test_lexical_index_follows_uploads_versions_deletes_and_rebuilds(settings) -> None:
    collection = CollectionFactory.create()
    travel = _upload(collection, "travel.txt", "Travel policy\n\nThe meal allowance abroad is 60 euros per day.")
    _upload(collection, "it.txt", "IT rules\n\nPasswords are rotated every ninety days.")
    assert lexical.lexical_ids(collection.pk) == _ready_chunk_ids(collection)
    # The document title is indexed with every chunk.
    assert travel.title == "Travel policy"
    hits = lexical.lexical_search(collection_id=collection.pk, query="allowance", k=5)
    assert {Chunk.objects.get(pk=h.chunk_id).document_id for h in hits} == {travel.pk}

    # A new version replaces the old one's chunks in both indexes.
    old_chunks = set(travel.chunks.values_list("id", flat=True))
    newer = _upload(collection, "travel.txt", "Travel policy\n\nThe meal allowance abroad is now 75 euros per day.")
    assert not Document.objects.filter(pk=travel.pk).exists()
    assert lexical.lexical_ids(collection.pk) == _ready_chunk_ids(collection)
    assert not old_chunks & lexical.lexical_ids(collection.pk)
    found = lexical.lexical_search(collection_id=collection.pk, query="meal allowance", k=5)
    assert {Chunk.objects.get(pk=h.chunk_id).document_id for h in found} == {newer.pk}

    # A deleted document leaves both indexes.
    ingest_services.document_delete(document=newer)
    assert lexical.lexical_ids(collection.pk) == _ready_chunk_ids(collection)
    assert lexical.lexical_search(collection_id=collection.pk, query="allowance", k=5) == []
    assert index.index_size(collection.pk) == len(_ready_chunk_ids(collection))

    # Rebuild from the database alone, after losing the files.
    lexical.lexical_path(collection.pk).unlink()
    assert indexes.indexes_rebuild(collection_id=collection.pk) == 1
    assert lexical.lexical_ids(collection.pk) == _ready_chunk_ids(collection)
    assert lexical.lexical_search(collection_id=collection.pk, query="passwords rotated", k=5)

    # Deleting the collection deletes its lexical index.
    ingest_services.collection_delete(collection=collection)
    assert not lexical.lexical_path(collection.pk).exists()
