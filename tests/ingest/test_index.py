from __future__ import annotations

import numpy as np
import pytest

from ingest import index


def unit(rows: int, dims: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_search_returns_chunk_ids_best_first() -> None:
    vectors = unit(5)
    index.index_upsert(collection_id=1, ids=[10, 11, 12, 13, 14], vectors=vectors)
    hits = index.index_search(collection_id=1, vector=vectors[3], k=3)
    assert hits[0].chunk_id == 13
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_adding_the_same_ids_twice_keeps_one_copy() -> None:
    vectors = unit(3)
    index.index_upsert(collection_id=2, ids=[1, 2, 3], vectors=vectors)
    index.index_upsert(collection_id=2, ids=[1, 2, 3], vectors=vectors)
    assert index.index_size(2) == 3


def test_removed_ids_are_never_found_again() -> None:
    vectors = unit(4)
    index.index_upsert(collection_id=3, ids=[1, 2, 3, 4], vectors=vectors)
    index.index_remove(collection_id=3, ids=[2])
    found = {h.chunk_id for h in index.index_search(collection_id=3, vector=vectors[1], k=10)}
    assert found == {1, 3, 4}


def test_readers_see_a_new_version_after_each_write() -> None:
    vectors = unit(2)
    index.index_upsert(collection_id=4, ids=[1], vectors=vectors[:1])
    assert index.index_size(4) == 1  # now cached by this reader
    index.index_upsert(collection_id=4, ids=[2], vectors=vectors[1:])
    assert index.index_size(4) == 2


def test_write_is_atomic_no_temporary_files_left(settings) -> None:
    index.index_upsert(collection_id=5, ids=[1, 2], vectors=unit(2))
    names = sorted(p.name for p in settings.INDEX_DIR.iterdir())
    assert names == ["collection-5.faiss", "collection-5.lock"]


def test_collections_are_separate_indexes() -> None:
    vectors = unit(2)
    index.index_upsert(collection_id=6, ids=[1], vectors=vectors[:1])
    index.index_upsert(collection_id=7, ids=[2], vectors=vectors[1:])
    assert [h.chunk_id for h in index.index_search(collection_id=6, vector=vectors[1], k=5)] == [1]


def test_missing_index_searches_empty() -> None:
    assert index.index_search(collection_id=99, vector=unit(1)[0], k=5) == []


def test_excluded_ids_are_skipped_inside_the_scan() -> None:
    vectors = unit(6)
    index.index_upsert(collection_id=8, ids=[1, 2, 3, 4, 5, 6], vectors=vectors)
    # Without exclusion the query's own vector wins; excluded, it cannot take a
    # place in the top k, so k visible hits still come back.
    hits = index.index_search(collection_id=8, vector=vectors[2], k=3, exclude=[3])
    assert 3 not in {h.chunk_id for h in hits}
    assert len(hits) == 3
    everything_but = index.index_search(collection_id=8, vector=vectors[2], k=10, exclude=[1, 2, 3, 4, 5])
    assert [h.chunk_id for h in everything_but] == [6]
