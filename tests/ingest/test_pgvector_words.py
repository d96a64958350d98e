"""BM25 inside PostgreSQL (``ingest/pgvector_words.py``), against real PostgreSQL with pgvector.

The pgvector pass runs these (``python -m tests.support.pgvector_server``): the counts
follow every kind of write, a score is Lucene's BM25 of the passages the asker may
read, and two writers in one collection never wait on each other's counts.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import Counter

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from assistant.accounts.scope import Scope
from ingest import pgvector_words
from ingest.embedding import to_bytes
from ingest.lexical import K1, B
from ingest.models import Chunk, Collection, Document
from ingest.pgvector_store import TABLE, pgvector_setup
from ingest.pgvector_words import WORDS
from ingest.vector_store import vector_store
from tests.factories import CollectionFactory, DocumentFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        django_settings.VECTOR_STORE != "pgvector",
        reason="the pgvector pass runs these: python -m tests.support.pgvector_server",
    ),
]

# Words the English configuration keeps as they are (checked by ``lexemes_are_the_words``).
COMMON, RARE, OTHER = "harbor", "zircon", "meadow"


def passages(collection: Collection, name: str, texts: list[str]) -> Document:
    """A ready document with these passages, written as the pipeline writes them."""
    rng = np.random.default_rng(len(name))
    vectors = rng.standard_normal((len(texts), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    document = DocumentFactory.create(collection=collection, name=name, content=name.encode())
    with transaction.atomic():
        chunks = Chunk.objects.bulk_create(
            Chunk(document=document, collection=collection, ordinal=i, text=t, embedding=to_bytes(v))
            for i, (t, v) in enumerate(zip(texts, vectors, strict=True))
        )
        Document.objects.filter(pk=document.pk).update(status=Document.Status.READY)
        vector_store().upsert(collection_id=collection.pk, ids=[c.pk for c in chunks], vectors=vectors, texts=texts)
    return document


def stored_counts() -> dict[tuple[int, str], tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT collection_id, word, sum(passages), sum(tokens) FROM {WORDS} GROUP BY 1, 2 "
            "HAVING sum(passages) <> 0 OR sum(tokens) <> 0"
        )
        return {(int(c), w): (int(p), int(t)) for c, w, p, t in cursor.fetchall()}


def recount() -> dict[tuple[int, str], tuple[int, int]]:
    """The same counts, computed from the side table's rows."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT collection_id, '', count(*), sum(length) FROM {TABLE} GROUP BY 1
            UNION ALL
            SELECT v.collection_id, l.lexeme, count(*), sum(coalesce(array_length(l.positions, 1), 1))
            FROM {TABLE} v, unnest(v.words) l GROUP BY 1, 2"""
        )
        return {(int(c), w): (int(p), int(t)) for c, w, p, t in cursor.fetchall()}


def unfolded() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {WORDS} WHERE NOT folded")
        return int(cursor.fetchone()[0])


def scores(scope: Scope, query: str) -> dict[int, float]:
    return {h.chunk_id: h.score for h in vector_store().lexical_search(scope=scope, query=query, k=100)}


def by_text(found: dict[int, float]) -> dict[str, float]:
    texts = dict(Chunk.objects.filter(pk__in=found).values_list("pk", "text"))
    return {texts[c]: s for c, s in found.items()}


def lexemes_are_the_words(texts: list[str]) -> None:
    with connection.cursor() as cursor:
        for text in texts:
            cursor.execute("SELECT tsvector_to_array(to_tsvector('english', %s))", [text])
            assert sorted(cursor.fetchone()[0]) == sorted(set(text.split())), text


def test_the_counts_follow_every_write_and_each_write_folds_them() -> None:
    collection, other = CollectionFactory.create(), CollectionFactory.create()
    first = passages(collection, "a.txt", [f"{COMMON} {RARE}", f"{COMMON} {COMMON} {OTHER}"])
    passages(collection, "b.txt", [f"{COMMON} {OTHER}"])
    passages(other, "c.txt", [f"{RARE} {RARE}"])
    assert stored_counts() == recount()
    assert stored_counts()[(collection.pk, COMMON)] == (3, 4)
    assert stored_counts()[(collection.pk, "")] == (3, 7)
    assert unfolded() == 0  # one row per collection and word

    # A new version: the same chunk ids written again (the upsert's update path).
    ids = list(first.chunks.order_by("ordinal").values_list("pk", flat=True))
    vector_store().upsert(
        collection_id=collection.pk, ids=ids, vectors=np.eye(2, 384, dtype=np.float32), texts=[RARE, RARE]
    )
    assert stored_counts() == recount()
    assert stored_counts()[(collection.pk, RARE)] == (2, 2)

    with pytest.raises(RuntimeError), transaction.atomic():
        passages(collection, "rolled-back.txt", [f"{RARE} {RARE} {RARE}"])
        raise RuntimeError("rolled back")
    assert stored_counts() == recount()

    first.delete()  # the chunks' trigger removes the rows, and the counts with them
    assert stored_counts() == recount()
    assert (collection.pk, RARE) not in stored_counts()
    assert unfolded() == 0

    collection.delete()
    assert stored_counts() == recount()
    assert {c for c, _ in stored_counts()} == {other.pk}


def test_a_score_is_lucene_bm25_over_the_collections_passages() -> None:
    texts = [f"{COMMON} {RARE}", f"{COMMON} {COMMON} {OTHER}", f"{COMMON} {OTHER} {OTHER} {OTHER}", OTHER]
    lexemes_are_the_words(texts)
    collection = CollectionFactory.create()
    passages(collection, "a.txt", texts)
    query = f"{RARE} {COMMON} {RARE}"  # a word the question repeats counts again
    split = [t.split() for t in texts]
    average = sum(map(len, split)) / len(split)

    def bm25(words: list[str]) -> float:
        total, tf = 0.0, Counter(words)
        for word, said in Counter(query.split()).items():
            if tf[word]:
                df = sum(word in w for w in split)
                idf = math.log(1 + (len(split) - df + 0.5) / (df + 0.5))
                total += said * idf * tf[word] / (K1 * ((1 - B) + B * len(words) / average) + tf[word])
        return total

    expected = {t: bm25(w) for t, w in zip(texts, split, strict=True) if bm25(w) > 0}
    found = by_text(scores(Scope.of([collection.pk]), query))
    assert found == pytest.approx(expected, rel=1e-9)
    # The rare word outweighs the common one said twice as often in a passage.
    assert max(found, key=found.__getitem__) == f"{COMMON} {RARE}"


def test_scores_with_a_document_hidden_are_those_of_a_collection_without_it() -> None:
    shown = [f"{COMMON} {RARE} {OTHER}", f"{COMMON} {COMMON}", f"{OTHER} {RARE}"]
    secret = [f"{RARE} {RARE} {RARE}", f"{RARE} {COMMON}", f"{COMMON} {OTHER} {OTHER} {OTHER} {OTHER}"]
    with_secret, without = CollectionFactory.create(), CollectionFactory.create()
    passages(with_secret, "shown.txt", shown)
    hidden = passages(with_secret, "secret.txt", secret)
    passages(without, "shown.txt", shown)
    query = f"{RARE} {COMMON} {OTHER}"

    asked = by_text(scores(Scope.of([with_secret.pk], hidden_document_ids=[hidden.pk]), query))
    assert asked == by_text(scores(Scope.of([without.pk]), query))  # equal, not close
    assert set(asked) == set(shown)
    # The control: unhidden, the secret passages are found and every score is different.
    control = by_text(scores(Scope.of([with_secret.pk]), query))
    assert set(secret) <= set(control)
    assert all(control[t] != asked[t] for t in shown)


def test_each_collection_is_scored_with_its_own_counts() -> None:
    small, large = CollectionFactory.create(), CollectionFactory.create()
    passages(small, "small.txt", [f"{RARE} {OTHER}", OTHER])
    passages(large, "large.txt", [f"{RARE} {OTHER}", *[f"{RARE} {COMMON}"] * 5])
    both = scores(Scope.of([small.pk, large.pk]), RARE)
    alone = {**scores(Scope.of([small.pk]), RARE), **scores(Scope.of([large.pk]), RARE)}
    assert both == alone


def test_lexical_scores_of_given_chunks_are_the_searchs_scores() -> None:
    collection = CollectionFactory.create()
    document = passages(collection, "a.txt", [f"{COMMON} {RARE}", f"{COMMON} {OTHER}", OTHER])
    scope = Scope.of([collection.pk])
    ids = list(document.chunks.order_by("ordinal").values_list("pk", flat=True))
    searched = scores(scope, f"{RARE} {COMMON}")
    given = vector_store().lexical_scores(scope=scope, query=f"{RARE} {COMMON}", chunk_ids={collection.pk: ids})
    assert given == {ids[0]: searched[ids[0]], ids[1]: searched[ids[1]], ids[2]: 0.0}


def test_setup_counts_the_rows_of_a_table_set_up_before_the_counts_existed() -> None:
    collection = CollectionFactory.create()
    passages(collection, "a.txt", [f"{COMMON} {RARE}", f"{OTHER} {OTHER}"])
    counted = stored_counts()
    with connection.cursor() as cursor:
        for event in ("insert", "delete", "update", "truncate"):
            cursor.execute(f"DROP TRIGGER {WORDS}_{event} ON {TABLE}")
        cursor.execute(f"DROP TABLE {WORDS}")
    pgvector_setup()
    assert stored_counts() == counted == recount()
    assert unfolded() == 0
    passages(collection, "b.txt", [RARE])  # and the triggers count again
    assert stored_counts() == recount()


@pytest.mark.django_db(transaction=True)
def test_two_writers_in_one_collection_do_not_wait_on_each_others_counts() -> None:
    collection = CollectionFactory.create()
    passages(collection, "first.txt", [f"{COMMON} {RARE}"])
    done = threading.Event()

    def second_writer() -> None:
        try:
            passages(collection, "second.txt", [f"{COMMON} {OTHER}", COMMON])
            done.set()
        finally:
            connections.close_all()

    with transaction.atomic():
        passages(collection, "open.txt", [f"{COMMON} {COMMON}"])  # holds its collection's fold until commit
        writer = threading.Thread(target=second_writer)
        writer.start()
        writer.join(timeout=120)  # only a writer blocked by this open transaction takes this long
        assert done.is_set(), "the second writer waited on the first one's counts"
    assert stored_counts() == recount()
    assert stored_counts()[(collection.pk, COMMON)] == (4, 5)
    assert unfolded() > 0  # the second writer left its rows to the next fold
    passages(collection, "third.txt", [OTHER])
    assert unfolded() == 0
    assert stored_counts() == recount()


def exact_best(scope: Scope, query: str, collection: Collection, k: int) -> list[tuple[int, float]]:
    """The ``k`` best by scoring every passage of the collection."""
    ids = list(Chunk.objects.filter(collection=collection).values_list("pk", flat=True))
    every = vector_store().lexical_scores(scope=scope, query=query, chunk_ids={collection.pk: ids})
    return sorted(((c, s) for c, s in every.items() if s > 0), key=lambda cs: (-cs[1], cs[0]))[:k]


def statements_of(search) -> tuple[list[tuple[int, float]], int]:
    with CaptureQueriesContext(connection) as queries:
        hits = search()
    return [(h.chunk_id, h.score) for h in hits], len([q for q in queries.captured_queries if "WITH" in q["sql"]])


@pytest.fixture
def mostly_common() -> Collection:
    """100 passages: all hold the common word, half the other one, 2 the rare one."""
    collection = CollectionFactory.create()
    texts = [" ".join([COMMON] * (1 + i % 3) + [RARE] * (i in (7, 55)) + [OTHER] * (i % 2 == 0)) for i in range(100)]
    passages(collection, "many.txt", texts)
    return collection


@pytest.mark.parametrize(
    ("k", "statements", "holding"),
    [
        (2, 2, {RARE}),  # the counts, then the rare word's 2: above what the others could add
        (10, 3, {RARE, OTHER}),  # too few: the next rarest word's passages, then above the common word's bound
        (60, 4, {RARE, OTHER, COMMON}),  # still too few: every word finds candidates
    ],
)
def test_the_rarest_words_find_candidates_first_and_the_others_only_while_they_could_lift_one(
    mostly_common, monkeypatch, k, statements, holding
) -> None:
    monkeypatch.setattr(pgvector_words, "STEP_PASSAGES", 1)  # one word a step
    scope, query = Scope.of([mostly_common.pk]), f"{RARE} {COMMON} {OTHER}"
    hits, spent = statements_of(lambda: vector_store().lexical_search(scope=scope, query=query, k=k))
    assert hits == exact_best(scope, query, mostly_common, k)
    assert len(hits) == k
    assert spent == statements
    texts = dict(Chunk.objects.filter(pk__in=[c for c, _ in hits]).values_list("pk", "text"))
    rarest = [w for w in (RARE, OTHER, COMMON) if w in holding][-1]
    assert any(rarest in texts[c].split() and not (set(texts[c].split()) & (holding - {rarest})) for c, _ in hits)


@pytest.mark.parametrize("step", [1, 40, pgvector_words.STEP_PASSAGES])
def test_the_best_are_those_of_scoring_every_passage_for_any_question_and_scope(monkeypatch, step) -> None:
    """Random passages over words of very different frequencies, random questions, one document hidden."""
    monkeypatch.setattr(pgvector_words, "STEP_PASSAGES", step)
    monkeypatch.setattr(pgvector_words, "CANDIDATES", 10**9)  # exact: the budget is the next test's
    rng = np.random.default_rng(step)
    vocabulary = [f"q{chr(97 + i // 26)}{chr(97 + i % 26)}x" for i in range(40)]
    shares = 1 / np.arange(1, len(vocabulary) + 1)  # Zipf: a few words in most passages, most in a few
    collection = CollectionFactory.create()
    documents = [
        passages(
            collection,
            f"{d}.txt",
            [" ".join(rng.choice(vocabulary, size=rng.integers(3, 15), p=shares / shares.sum())) for _ in range(60)],
        )
        for d in range(4)
    ]
    for hidden in ([], [documents[1].pk]):
        scope = Scope.of([collection.pk], hidden_document_ids=hidden)
        for _ in range(15):
            query = " ".join(rng.choice(vocabulary, size=rng.integers(1, 7)))
            for k in (1, 5, 20):
                best = [(h.chunk_id, h.score) for h in vector_store().lexical_search(scope=scope, query=query, k=k)]
                assert best == exact_best(scope, query, collection, k), (query, k, hidden)


def test_past_its_budget_a_search_counts_on_a_words_likely_share_of_its_bound(monkeypatch) -> None:
    """The trade ``CANDIDATES`` makes, on a case built to lose by it.

    The rare word's passage sets the bar (0.72); the common word's bound (1.34) is above
    it, so an exact search scores the common word's passages and finds the short one that
    says it three times (0.92). Past the budget the bound counts at ``LIKELY`` (0.67),
    below the bar: that passage is no longer a candidate.
    """
    collection = CollectionFactory.create()
    short, rare = f"{COMMON} {COMMON} {COMMON}", " ".join([RARE] + [OTHER] * 6)
    texts = [rare, short, *[f"{COMMON} {OTHER} {OTHER} {OTHER}"] * 4, *[f"{OTHER} {OTHER} {OTHER}"] * 14]
    document = passages(collection, "a.txt", texts)
    scope, query = Scope.of([collection.pk]), f"{RARE} {COMMON}"
    exact = exact_best(scope, query, collection, 1)
    assert list(by_text(dict(exact))) == [short]
    monkeypatch.setattr(pgvector_words, "STEP_PASSAGES", 1)  # one word a step, as in a large collection

    assert [(h.chunk_id, h.score) for h in vector_store().lexical_search(scope=scope, query=query, k=1)] == exact
    monkeypatch.setattr(pgvector_words, "CANDIDATES", 0)
    hits = vector_store().lexical_search(scope=scope, query=query, k=1)
    assert list(by_text({h.chunk_id: h.score for h in hits})) == [rare]
    # What is found is still scored exactly.
    given = vector_store().lexical_scores(scope=scope, query=query, chunk_ids={collection.pk: [hits[0].chunk_id]})
    assert given == {hits[0].chunk_id: hits[0].score}
    # A question about named documents searches their few passages exactly.
    named = dataclasses.replace(scope, document_ids=frozenset([document.pk]))
    assert [(h.chunk_id, h.score) for h in vector_store().lexical_search(scope=named, query=query, k=1)] == exact
    monkeypatch.setattr(pgvector_words, "LIKELY", 1.0)
    assert [(h.chunk_id, h.score) for h in vector_store().lexical_search(scope=scope, query=query, k=1)] == exact
