"""The index type follows the collection's size: exact up to INDEX_EXACT_MAX, IVF above.

Small and fast: a few thousand low-dimensional vectors and a threshold set low.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import pytest

from ingest import index

DIMS = 32
THRESHOLD = 1_000


@pytest.fixture(autouse=True)
def _low_threshold(settings) -> None:
    settings.INDEX_EXACT_MAX = THRESHOLD
    settings.INDEX_IVF_RECALL = 0.95


def clustered(rows: int, *, seed: int = 0, clusters: int = 20, spread: float = 0.15) -> np.ndarray:
    """Unit vectors around a few well separated centres: easy data for an IVF index."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, DIMS))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, clusters, rows)] + spread * rng.normal(size=(rows, DIMS)) / np.sqrt(DIMS)
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def uniform(rows: int, *, seed: int = 0) -> np.ndarray:
    """Unit vectors with no structure at all: the hard case for an IVF index."""
    vectors = np.random.default_rng(seed).normal(size=(rows, DIMS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ids_from(start: int, rows: int) -> list[int]:
    return list(range(start, start + rows))


def loaded(collection_id: int) -> Any:
    return index.index_load(collection_id)


def kind(collection_id: int) -> str:
    return "ivf" if isinstance(loaded(collection_id), faiss.IndexIVF) else "flat"


def top_ids(collection_id: int, query: np.ndarray, k: int = 10, exclude: list[int] | None = None) -> list[int]:
    hits = index.index_search(collection_id=collection_id, vector=query, k=k, exclude=exclude or [])
    return [h.chunk_id for h in hits]


def test_type_switches_when_a_write_crosses_the_threshold_either_way() -> None:
    vectors = clustered(1_500)
    index.index_upsert(collection_id=1, ids=ids_from(1, 900), vectors=vectors[:900])
    assert kind(1) == "flat"
    index.index_upsert(collection_id=1, ids=ids_from(901, 200), vectors=vectors[900:1_100])
    assert kind(1) == "ivf"
    assert index.index_size(1) == 1_100
    index.index_remove(collection_id=1, ids=ids_from(1, 300))
    assert kind(1) == "flat"
    assert index.index_size(1) == 800
    # Nothing was lost or duplicated by the two conversions.
    assert top_ids(1, vectors[500], k=1) == [501]
    assert top_ids(1, vectors[100], k=1) != [101]


def test_exactly_the_threshold_stays_exact() -> None:
    index.index_upsert(collection_id=1, ids=ids_from(1, THRESHOLD), vectors=clustered(THRESHOLD))
    assert kind(1) == "flat"


def test_ivf_search_agrees_with_exact_on_easy_data(settings) -> None:
    drawn = clustered(3_050)  # the last 50 are held-out queries around the same centres
    vectors, queries = drawn[:3_000], drawn[3_000:]
    index.index_replace(collection_id=1, ids=ids_from(1, 3_000), vectors=vectors)
    settings.INDEX_EXACT_MAX = 10_000
    index.index_replace(collection_id=2, ids=ids_from(1, 3_000), vectors=vectors)
    assert (kind(1), kind(2)) == ("ivf", "flat")
    recalls = []
    for query in queries:
        approximate = index.index_search(collection_id=1, vector=query, k=10)
        exact = index.index_search(collection_id=2, vector=query, k=10)
        assert len(approximate) == 10
        assert approximate[0].chunk_id == exact[0].chunk_id
        # Scores are the true inner products of the chunks found, best first.
        true_scores = [float(vectors[h.chunk_id - 1] @ query) for h in approximate]
        assert [h.score for h in approximate] == pytest.approx(true_scores, abs=1e-5)
        assert [h.score for h in approximate] == sorted((h.score for h in approximate), reverse=True)
        recalls.append(len({h.chunk_id for h in approximate} & {h.chunk_id for h in exact}) / 10)
    assert np.mean(recalls) >= 0.95


def test_calibrated_nprobe_reaches_the_recall_target_on_hard_data(settings) -> None:
    """On structureless data one list is far from enough: calibration must probe more."""
    vectors, queries = uniform(4_000), uniform(100, seed=1)
    index.index_replace(collection_id=1, ids=ids_from(1, 4_000), vectors=vectors)
    ivf = loaded(1)
    assert ivf.nprobe > 1
    exact = faiss.IndexFlatIP(DIMS)
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    found = [set(top_ids(1, q)) for q in queries]
    recall = np.mean([len(f & {int(i) + 1 for i in t}) / 10 for f, t in zip(found, truth, strict=True)])
    # Calibrated on the collection's own vectors; held-out queries may land a little lower.
    assert recall >= 0.9
    settings.INDEX_IVF_RECALL = 0.5
    index.index_replace(collection_id=2, ids=ids_from(1, 4_000), vectors=vectors)
    assert loaded(2).nprobe < ivf.nprobe


def test_deletes_and_replacements_work_on_ivf() -> None:
    vectors = clustered(2_000)
    index.index_upsert(collection_id=1, ids=ids_from(1, 2_000), vectors=vectors)
    assert kind(1) == "ivf"
    index.index_remove(collection_id=1, ids=[11, 12, 13])
    assert index.index_size(1) == 1_997
    for gone in (11, 12, 13):
        assert gone not in top_ids(1, vectors[gone - 1], k=50)
    # A new version: chunk 21 gets chunk 1,501's vector, and chunk 22 goes, in one write.
    index.index_upsert(collection_id=1, ids=[21], vectors=vectors[1_500:1_501], remove=[22])
    assert index.index_size(1) == 1_996
    best = index.index_search(collection_id=1, vector=vectors[1_500], k=2)
    assert {h.chunk_id for h in best} == {21, 1_501}
    assert best[0].score == pytest.approx(1.0, abs=1e-5)
    assert 21 not in top_ids(1, vectors[20], k=5)
    assert 22 not in top_ids(1, vectors[21], k=50)
    assert kind(1) == "ivf"
    # What a catch-up between engines compares with the database: the ids, read from the lists.
    assert index.index_ids(1) == set(ids_from(1, 2_000)) - {11, 12, 13, 22}


def test_excluded_ids_are_skipped_inside_the_ivf_scan() -> None:
    vectors = clustered(2_000)
    index.index_upsert(collection_id=1, ids=ids_from(1, 2_000), vectors=vectors)
    assert kind(1) == "ivf"
    visible = top_ids(1, vectors[99], k=20)
    hidden = visible[:10]
    assert 100 in hidden
    hits = top_ids(1, vectors[99], k=10, exclude=hidden)
    # Still k hits: the hidden ones never took a place in the top k.
    assert len(hits) == 10
    assert not set(hits) & set(hidden)
    assert hits == visible[10:20]


def test_rebuild_produces_the_type_the_size_calls_for() -> None:
    vectors = clustered(1_200)
    index.index_replace(collection_id=1, ids=ids_from(1, 1_200), vectors=vectors)
    assert kind(1) == "ivf"
    index.index_replace(collection_id=1, ids=ids_from(1, 600), vectors=vectors[:600])
    assert kind(1) == "flat"
    assert index.index_size(1) == 600
    index.index_replace(collection_id=1, ids=[], vectors=np.zeros((0, DIMS), np.float32))
    assert index.index_size(1) == 0


def test_drifted_ivf_index_is_retrained_on_the_next_write() -> None:
    vectors = clustered(9_000)
    index.index_replace(collection_id=1, ids=ids_from(1, 1_100), vectors=vectors[:1_100])
    trained_for_small = int(loaded(1).nlist)
    index.index_upsert(collection_id=1, ids=ids_from(1_101, 1_000), vectors=vectors[1_100:2_100])
    assert int(loaded(1).nlist) == trained_for_small  # grown under 4x: kept
    index.index_upsert(collection_id=1, ids=ids_from(2_101, 6_900), vectors=vectors[2_100:])
    retrained = loaded(1)
    assert int(retrained.nlist) > trained_for_small
    assert index.index_size(1) == 9_000
    assert top_ids(1, vectors[8_999], k=1) == [9_000]


def test_readers_see_the_new_index_after_a_switch() -> None:
    vectors = clustered(1_500)
    index.index_upsert(collection_id=1, ids=ids_from(1, 900), vectors=vectors[:900])
    assert top_ids(1, vectors[1_200], k=1) != [1_201]  # this reader now holds the flat index
    index.index_upsert(collection_id=1, ids=ids_from(901, 600), vectors=vectors[900:])
    assert top_ids(1, vectors[1_200], k=1) == [1_201]
    assert kind(1) == "ivf"
    index.index_remove(collection_id=1, ids=ids_from(901, 600))
    assert top_ids(1, vectors[1_200], k=1) != [1_201]
    assert kind(1) == "flat"


@pytest.mark.parametrize("mapped", [False, True])
def test_readers_hold_ivf_lists_in_memory_unless_mapping_is_asked_for(settings, mapped) -> None:
    settings.INDEX_MMAP = mapped
    drawn = clustered(3_050)
    vectors, queries = drawn[:3_000], drawn[3_000:]
    index.index_replace(collection_id=1, ids=ids_from(1, 3_000), vectors=vectors)
    lists = type(faiss.downcast_InvertedLists(loaded(1).invlists)).__name__
    # Mapped lists stay in the file (OnDiskInvertedLists); the default copies them into memory.
    assert lists == ("OnDiskInvertedLists" if mapped else "ArrayInvertedLists")
    # Either way the reader searches the same index, hidden ids skipped, and sees later writes.
    on_disk = index.index_read(index.index_path(1))
    for query in queries[:10]:
        _, expected = on_disk.search(query.reshape(1, -1), 10)
        found = top_ids(1, query)
        assert found == [int(i) for i in expected[0]]
        assert not set(top_ids(1, query, exclude=found[:3])) & set(found[:3])
    best = top_ids(1, queries[0], k=1)[0]
    index.index_remove(collection_id=1, ids=[best])
    assert best not in top_ids(1, queries[0])
