"""The pgvector engine against real PostgreSQL with pgvector (``VECTOR_STORE=pgvector``).

These run in the pgvector pass only (``python -m tests.support.pgvector_server``, which
starts the packaged server and points ``DATABASE_URL`` at it): the other passes' databases
(SQLite, Debian's PostgreSQL) have no pgvector. That pass also runs the retrieval and
adversarial leak tests, so they hold on both engines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from assistant.accounts.models import Role
from assistant.accounts.scope import Scope
from assistant.accounts.selectors import read_scope
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat
from assistant.chat.retrieval import DenseRetriever, HybridRetriever, LexicalRetriever
from ingest import index, pipeline
from ingest import services as ingest
from ingest.embedding import embed_query, to_bytes
from ingest.indexes import collection_reindex
from ingest.models import Chunk, Collection, Document
from ingest.pgvector_store import TABLE, PgvectorStore, table_dimensions
from ingest.vector_store import vector_store
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        django_settings.VECTOR_STORE != "pgvector",
        reason="the pgvector pass runs these: python -m tests.support.pgvector_server",
    ),
]

SECRET = "The merger code name is BLUEHERON and it closes on 14 May."
HANDBOOK = "Travel meal allowance abroad is 60 euros per day. Trains are booked second class."


def rows_of(document_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE document_id = %s", [document_id])
        return int(cursor.fetchone()[0])


def upload(collection: Collection, name: str, text: str, *, groups=()) -> Document:
    return DocumentFactory.create(
        collection=collection, name=name, content=text.encode(), groups=groups, processed=True
    )


def synthetic(collection: Collection, name: str, vectors: np.ndarray) -> Document:
    """A ready document whose chunks carry the given (normalised) vectors, written as the pipeline writes them."""
    document = DocumentFactory.create(collection=collection, name=name, content=name.encode())
    with transaction.atomic():
        chunks = Chunk.objects.bulk_create(
            Chunk(document=document, collection=collection, ordinal=i, text=f"{name} {i}", embedding=to_bytes(v))
            for i, v in enumerate(vectors)
        )
        Document.objects.filter(pk=document.pk).update(status=Document.Status.READY)
        vector_store().upsert(
            collection_id=collection.pk, ids=[c.pk for c in chunks], vectors=vectors, texts=[c.text for c in chunks]
        )
    return document


def unit(rng: np.random.Generator, n: int, dims: int, *, towards: np.ndarray | None = None, noise: float = 1.0):
    vectors = rng.standard_normal((n, dims)).astype(np.float32) * noise
    if towards is not None:
        vectors += towards
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def only_the_hnsw_index() -> None:
    """For the rest of this test's transaction, the planner may order rows only through the HNSW index."""
    with connection.cursor() as cursor:
        for switch in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            cursor.execute(f"SET LOCAL {switch} = off")


def test_the_table_holds_vectors_as_wide_as_the_model() -> None:
    from ingest.embedding import dimensions

    assert table_dimensions() == dimensions()


def test_a_restricted_nearest_neighbour_is_never_returned_even_through_a_selective_filter() -> None:
    """The hidden document holds the query's 600 nearest neighbours; the asker may read 12 far ones.

    HNSW alone would find only hidden rows in its candidate list and return nothing after
    filtering; the iterative scan goes on until it has ``k`` readable rows.
    """
    rng = np.random.default_rng(7)
    dims = table_dimensions() or 384
    query = unit(rng, 1, dims)[0]
    company, other = CollectionFactory.create(name="Company"), CollectionFactory.create(name="Other")
    secret = synthetic(company, "secret", unit(rng, 600, dims, towards=query * 3, noise=0.3))
    synthetic(other, "elsewhere", unit(rng, 300, dims, towards=query * 3, noise=0.3))
    far = unit(rng, 12, dims)
    visible = synthetic(company, "visible", far)
    scope = Scope.of([company.pk], hidden_document_ids=[secret.pk])
    only_the_hnsw_index()

    hits = PgvectorStore().dense_search(scope=scope, vector=query, k=10)

    expected_order = np.argsort(-(far @ query))[:10]
    chunk_ids = list(visible.chunks.order_by("ordinal").values_list("pk", flat=True))
    assert [h.chunk_id for h in hits] == [chunk_ids[i] for i in expected_order]
    # The control: whoever may see the secret gets its passages first.
    seen = PgvectorStore().dense_search(scope=Scope.of([company.pk]), vector=query, k=10)
    assert set(Chunk.objects.filter(pk__in=[h.chunk_id for h in seen]).values_list("document_id", flat=True)) == {
        secret.pk
    }


def test_the_search_is_an_hnsw_index_scan_with_the_scope_inside_it() -> None:
    rng = np.random.default_rng(3)
    dims = table_dimensions() or 384
    company = CollectionFactory.create(name="Company")
    synthetic(company, "some", unit(rng, 50, dims))
    only_the_hnsw_index()
    with connection.cursor() as cursor:
        literal = "[" + ",".join(["0.05"] * dims) + "]"
        cursor.execute(
            f"EXPLAIN SELECT chunk_id FROM {TABLE} WHERE collection_id = ANY(%s) AND NOT (document_id = ANY(%s)) "
            "ORDER BY embedding <#> %s::halfvec LIMIT 10",
            [[company.pk], [1], literal],
        )
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert f"{TABLE}_hnsw" in plan
    assert "Filter" in plan


@dataclass(frozen=True)
class Readers:
    """A company collection the staff read; ``bob`` is staff only, ``alice`` is on the ``board`` too."""

    company: Collection
    board: Group
    bob: User
    alice: User


@pytest.fixture
def readers() -> Readers:
    staff, board = GroupFactory.create(name="staff"), GroupFactory.create(name="board")
    bob, alice = UserFactory.create(username="bob"), UserFactory.create(username="alice")
    bob.groups.add(staff)
    alice.groups.add(staff, board)
    company = CollectionFactory.create(name="Company")
    collection_grant(collection=company, group=staff, role=Role.READ)
    return Readers(company=company, board=board, bob=bob, alice=alice)


def test_restricted_passages_are_never_candidates_for_any_kind_and_the_control_finds_them(readers: Readers) -> None:
    company, bob, alice = readers.company, readers.bob, readers.alice
    upload(company, "handbook.txt", HANDBOOK)
    merger = upload(company, "merger.txt", SECRET, groups=[readers.board])
    for user, sees in ((bob, False), (alice, True)):
        scope = read_scope(user=user, collections=[company])
        for retriever in (DenseRetriever(scope=scope), LexicalRetriever(scope=scope), HybridRetriever(scope=scope)):
            found = {p.document_id for p in retriever.retrieve("merger code name BLUEHERON", k=50)}
            assert (merger.pk in found) is sees, (user.username, type(retriever).__name__)
        passages = chat.passages_retrieve(user=user, collection=company, query="BLUEHERON", k=50)
        assert any("BLUEHERON" in p.text for p in passages) is sees


def test_a_document_is_searchable_once_its_chunks_commit_and_its_rows_match_them() -> None:
    company = CollectionFactory.create(name="Company")
    handbook = upload(company, "handbook.txt", HANDBOOK)
    assert rows_of(handbook.pk) == handbook.chunks.count() > 0


def test_rows_written_in_a_rolled_back_transaction_are_gone_with_it() -> None:
    company = CollectionFactory.create(name="Company")
    document = DocumentFactory.create(collection=company, name="draft.txt", content=b"draft")
    dims = table_dimensions() or 384
    with pytest.raises(RuntimeError), transaction.atomic():
        chunk = Chunk.objects.create(document=document, collection=company, ordinal=0, text="draft", embedding=b"")
        vector_store().upsert(
            collection_id=company.pk, ids=[chunk.pk], vectors=np.ones((1, dims)) / dims**0.5, texts=["draft"]
        )
        assert rows_of(document.pk) == 1
        raise RuntimeError("the chunks' transaction fails")
    assert rows_of(document.pk) == 0


def test_a_deleted_document_is_gone_from_the_index_at_once() -> None:
    company = CollectionFactory.create(name="Company")
    merger = upload(company, "merger.txt", SECRET)
    scope = Scope.of([company.pk])
    assert {h.chunk_id for h in vector_store().lexical_search(scope=scope, query="BLUEHERON", k=5)}
    with transaction.atomic():
        ingest.document_retire(document=merger)  # the delete's transaction, before any index upkeep
        assert rows_of(merger.pk) == 0
        assert vector_store().lexical_search(scope=scope, query="BLUEHERON", k=5) == []
        assert vector_store().dense_search(scope=scope, vector=embed_query("merger code name"), k=5) == []


def test_a_new_version_replaces_the_old_ones_rows() -> None:
    company = CollectionFactory.create(name="Company")
    old = upload(company, "merger.txt", SECRET)
    newer = DocumentFactory.create(
        collection=company, name="merger.txt", content=b"The merger code name is now GREYHERON."
    )
    assert newer.supersedes_id == old.pk
    pipeline.documents_process_here(document_ids=[newer.pk])
    assert rows_of(old.pk) == 0
    assert rows_of(newer.pk) == newer.chunks.count() > 0
    scope = Scope.of([company.pk])
    assert vector_store().lexical_search(scope=scope, query="BLUEHERON", k=5) == []
    found = vector_store().lexical_search(scope=scope, query="GREYHERON", k=5)
    assert {Chunk.objects.get(pk=h.chunk_id).document_id for h in found} == {newer.pk}


def test_a_deleted_collection_leaves_no_rows() -> None:
    company = CollectionFactory.create(name="Company")
    handbook = upload(company, "handbook.txt", HANDBOOK)
    ingest.collection_delete(collection=company)
    assert rows_of(handbook.pk) == 0


def refuse_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("moving between engines must not embed anything")

    monkeypatch.setattr("ingest.embedding.embed_texts", refuse)


def test_migrate_moves_an_instance_between_engines_without_embedding(settings, monkeypatch) -> None:
    settings.VECTOR_STORE = "faiss"
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", HANDBOOK)
    upload(company, "merger.txt", SECRET)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        assert cursor.fetchone()[0] == 0  # FAISS wrote files only
    scope = Scope.of([company.pk])
    vector = embed_query("merger code name")
    with_faiss = [h.chunk_id for h in DenseRetriever(scope=scope).hits(vector, k=10)]
    assert with_faiss

    refuse_embedding(monkeypatch)
    call_command("vectors", "migrate", "--to", "pgvector")
    # A first load: the rows went in without the indexes, which were built over them afterwards.
    assert index_names() >= {f"{TABLE}_hnsw", f"{TABLE}_words"}
    assert index.index_path(company.pk).exists()  # the engine in use is left as it was
    settings.VECTOR_STORE = "pgvector"
    assert PgvectorStore().size(collection_id=company.pk) == Chunk.objects.filter(collection=company).count()
    # The same passages, the best first (halfvec rounds the scores in their fourth digit).
    with_pgvector = [h.chunk_id for h in DenseRetriever(scope=scope).hits(vector, k=10)]
    assert (with_pgvector[0], set(with_pgvector)) == (with_faiss[0], set(with_faiss))
    call_command("vectors", "drop", "--engine", "faiss")
    assert not index.index_path(company.pk).exists()

    call_command("vectors", "migrate", "--to", "faiss")
    settings.VECTOR_STORE = "faiss"
    assert Path(index.index_path(company.pk)).exists()
    assert PgvectorStore().size(collection_id=company.pk) == Chunk.objects.filter(collection=company).count()
    assert [h.chunk_id for h in DenseRetriever(scope=scope).hits(vector, k=10)] == with_faiss
    call_command("vectors", "drop", "--engine", "pgvector")
    assert PgvectorStore().size(collection_id=company.pk) == 0


def ready_ids(collection: Collection) -> set[int]:
    return set(
        Chunk.objects.filter(collection=collection, document__status=Document.Status.READY).values_list("pk", flat=True)
    )


def found_documents(scope: Scope, query: str, vector: np.ndarray) -> tuple[set[int | None], set[int | None]]:
    """The documents a lexical and a dense search of the configured engine return for ``scope``."""
    store = vector_store()
    lexical = store.lexical_search(scope=scope, query=query, k=50)
    dense = store.dense_search(scope=scope, vector=vector, k=50)
    documents = dict(Chunk.objects.values_list("pk", "document_id"))  # a deleted chunk's hit counts as None
    return {documents.get(h.chunk_id) for h in lexical}, {documents.get(h.chunk_id) for h in dense}


MOVES = [("faiss", "pgvector"), ("pgvector", "faiss")]


@pytest.mark.parametrize(("source", "target"), MOVES)
def test_searches_keep_their_passages_between_migrate_and_the_switch(settings, monkeypatch, source, target) -> None:
    settings.VECTOR_STORE = source
    company = CollectionFactory.create(name="Company")
    handbook = upload(company, "handbook.txt", HANDBOOK)
    merger = upload(company, "merger.txt", SECRET)
    scope = Scope.of([company.pk])
    vector = embed_query("merger code name BLUEHERON")
    before = found_documents(scope, "merger BLUEHERON allowance", vector)
    assert before == ({handbook.pk, merger.pk}, {handbook.pk, merger.pk})
    held_before = vector_store(source).chunk_ids(collection_id=company.pk)

    refuse_embedding(monkeypatch)
    call_command("vectors", "migrate", "--to", target)

    # Every process still on the old engine finds what it found: its copy is untouched.
    assert vector_store(source).chunk_ids(collection_id=company.pk) == held_before
    assert found_documents(scope, "merger BLUEHERON allowance", vector) == before
    assert vector_store(target).chunk_ids(collection_id=company.pk).complete == ready_ids(company)


@pytest.mark.parametrize(("source", "target"), MOVES)
def test_writes_between_migrate_and_the_switch_reach_the_new_engine_on_the_catch_up(
    settings, monkeypatch, capsys, readers: Readers, source, target
) -> None:
    settings.VECTOR_STORE = source
    company, board, bob, alice = readers.company, readers.board, readers.bob, readers.alice
    upload(company, "handbook.txt", HANDBOOK)
    obsolete = upload(company, "obsolete.txt", "The old canteen voucher scheme ends in March.")
    with monkeypatch.context() as patched:
        refuse_embedding(patched)
        call_command("vectors", "migrate", "--to", target)

    # Still on the old engine: a restricted document arrives, another is deleted.
    merger = upload(company, "merger.txt", SECRET, groups=[board])
    gone = set(obsolete.chunks.values_list("pk", flat=True))
    ingest.document_delete(document=obsolete)
    vector = embed_query("merger code name BLUEHERON, canteen voucher")
    settings.VECTOR_STORE = target  # the switch and restart
    refuse_embedding(monkeypatch)
    capsys.readouterr()
    call_command("vectors", "status")
    assert f"{target} (in use) differs from the database" in capsys.readouterr().out

    call_command("vectors", "migrate", "--to", target)

    held = vector_store(target).chunk_ids(collection_id=company.pk)
    assert held.complete == held.present == ready_ids(company)
    assert not gone & held.present
    for user, sees in ((bob, False), (alice, True)):
        scope = read_scope(user=user, collections=[company])
        for found in found_documents(scope, "merger BLUEHERON canteen voucher", vector):
            assert (merger.pk in found) is sees, user.username
            assert None not in found  # nothing of the deleted document
    call_command("vectors", "status")
    out = capsys.readouterr().out
    assert f"{target} (in use) agrees with the database." in out
    # Another run finds nothing to do.
    call_command("vectors", "migrate", "--to", target)
    assert "(0 added, 0 removed)" in capsys.readouterr().out


def index_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s", [TABLE])
        return {row[0] for row in cursor.fetchall()}


def test_a_failed_first_load_still_leaves_the_indexes(settings, monkeypatch) -> None:
    settings.VECTOR_STORE = "faiss"
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", HANDBOOK)

    def fail(self, *, collection_id):
        assert f"{TABLE}_hnsw" not in index_names()  # loading without the index
        raise RuntimeError("disk full")

    monkeypatch.setattr(PgvectorStore, "rebuild", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        call_command("vectors", "migrate", "--to", "pgvector")
    assert index_names() >= {f"{TABLE}_hnsw", f"{TABLE}_words"}
    assert index.index_path(company.pk).exists()  # the FAISS copy is kept


def test_a_later_migrate_keeps_the_indexes_while_it_writes(settings, monkeypatch) -> None:
    settings.VECTOR_STORE = "pgvector"
    company = CollectionFactory.create(name="Company")
    upload(company, "merger.txt", SECRET)  # the table is not empty: readers may be on it
    handbook = upload(company, "handbook.txt", HANDBOOK)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE document_id = %s", [handbook.pk])  # passages it lacks
    seen: list[set[str]] = []
    upsert = PgvectorStore.upsert

    def watch(self, **kwargs):
        seen.append(index_names())
        return upsert(self, **kwargs)

    monkeypatch.setattr(PgvectorStore, "upsert", watch)
    call_command("vectors", "migrate", "--to", "pgvector")
    assert seen and seen[0] >= {f"{TABLE}_hnsw", f"{TABLE}_words"}
    assert rows_of(handbook.pk) == handbook.chunks.count() > 0


@pytest.mark.parametrize("engine", ["faiss", "pgvector"])
def test_drop_refuses_the_engine_in_use_and_removes_the_idle_one(settings, engine) -> None:
    settings.VECTOR_STORE = engine
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", HANDBOOK)
    call_command("vectors", "migrate", "--to", "faiss" if engine == "pgvector" else "pgvector")
    held = {name: vector_store(name).chunk_ids(collection_id=company.pk) for name in ("faiss", "pgvector")}
    assert held["faiss"].complete == held["pgvector"].complete == ready_ids(company)

    with pytest.raises(CommandError, match=f"VECTOR_STORE={engine}"):
        call_command("vectors", "drop", "--engine", engine)
    assert vector_store(engine).chunk_ids(collection_id=company.pk) == held[engine]
    found = vector_store().lexical_search(scope=Scope.of([company.pk]), query="meal allowance", k=5)
    assert found

    idle = "faiss" if engine == "pgvector" else "pgvector"
    call_command("vectors", "drop", "--engine", idle)
    assert not vector_store(idle).chunk_ids(collection_id=company.pk).present
    assert vector_store().lexical_search(scope=Scope.of([company.pk]), query="meal allowance", k=5) == found


def test_a_reindex_makes_the_idle_engine_copy_the_collection_again(settings, monkeypatch) -> None:
    settings.VECTOR_STORE = "faiss"
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", HANDBOOK)
    call_command("vectors", "migrate", "--to", "pgvector")
    assert PgvectorStore().size(collection_id=company.pk) > 0

    collection_reindex(collection_id=company.pk)  # new vectors under the same chunk ids

    assert PgvectorStore().size(collection_id=company.pk) == 0  # its old vectors are not kept
    refuse_embedding(monkeypatch)
    call_command("vectors", "migrate", "--to", "pgvector")
    assert PgvectorStore().chunk_ids(collection_id=company.pk).complete == ready_ids(company)


def test_setup_is_idempotent_and_status_compares_both_engines_with_the_database(capsys) -> None:
    company = CollectionFactory.create(name="Company")
    upload(company, "handbook.txt", HANDBOOK)
    call_command("vectors", "setup")
    call_command("vectors", "status")
    out = capsys.readouterr().out
    count = Chunk.objects.filter(collection=company).count()
    assert "ready for" in out
    assert "VECTOR_STORE=pgvector" in out
    assert f"Company: faiss 0 ({count} missing, 0 extra), pgvector {count} (in step)" in out
    assert "faiss (idle) holds nothing." in out
    assert "pgvector (in use) agrees with the database." in out
