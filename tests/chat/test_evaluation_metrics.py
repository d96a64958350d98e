"""Retrieval metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from assistant.chat.evaluation import (
    GoldPage,
    QAItem,
    document_recall,
    page_hit,
    ranked_documents,
)
from assistant.chat.metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k
from assistant.chat.retrieval import Passage


def passage(document_id: int, name: str = "doc.pdf", pages: tuple[int | None, int | None] = (None, None)) -> Passage:
    return Passage(
        chunk_id=document_id * 100,
        document_id=document_id,
        document_name=name,
        collection_id=1,
        heading="",
        text="",
        page_start=pages[0],
        page_end=pages[1],
        score=0.5,
    )


def test_ndcg_with_graded_relevance() -> None:
    # DCG = 2/log2(2) + 0 + 1/log2(4) = 2.5; ideal = 2/log2(2) + 1/log2(3) = 2.6309
    value = ndcg_at_k(["d1", "d2", "d3"], {"d1": 2, "d3": 1, "d9": 0}, k=10)
    assert value == pytest.approx(2.5 / (2 + 1 / math.log2(3)))
    assert value == pytest.approx(0.95023, abs=1e-5)


def test_ndcg_single_relevant_document_at_rank_two() -> None:
    assert ndcg_at_k(["x", "d1"], {"d1": 1}, k=10) == pytest.approx(1 / math.log2(3))


def test_ndcg_ignores_documents_past_the_cutoff_and_is_one_for_the_ideal_order() -> None:
    ranked = [f"x{i}" for i in range(10)] + ["d1"]
    assert ndcg_at_k(ranked, {"d1": 1}, k=10) == 0.0
    assert ndcg_at_k(["d1", "d2"], {"d1": 2, "d2": 1}, k=10) == pytest.approx(1.0)
    # the ideal ranking is cut at k too: two relevant documents, k=1, the best first
    assert ndcg_at_k(["d1", "d2"], {"d1": 2, "d2": 1}, k=1) == pytest.approx(1.0)
    assert ndcg_at_k(["d2", "d1"], {"d1": 2, "d2": 1}, k=1) == pytest.approx(0.5)


def test_recall_at_k() -> None:
    relevant = {"a", "b", "c", "d"}
    assert recall_at_k(["a", "x", "c"], relevant, k=2) == 0.25
    assert recall_at_k(["a", "x", "c"], relevant, k=3) == 0.5
    assert recall_at_k(["x"], set(), k=3) == 0.0


def test_mrr_at_k() -> None:
    assert mrr_at_k(["x", "y", "a", "b"], {"a", "b"}, k=10) == pytest.approx(1 / 3)
    assert mrr_at_k(["a"], {"a"}, k=10) == 1.0
    assert mrr_at_k(["x", "y", "a"], {"a"}, k=2) == 0.0


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([40, 10, 30, 20], 50) == 25.0
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_documents_rank_by_their_best_passage() -> None:
    passages = [passage(5), passage(3), passage(5), passage(8), passage(3)]
    keys = {5: ["c5"], 3: ["c3", "c3-copy"], 8: ["c8"]}
    assert ranked_documents(passages, keys) == ["c5", "c3", "c3-copy", "c8"]


def test_document_recall_and_page_hits_use_case_insensitive_globs() -> None:
    item = QAItem(
        line=1,
        question="q",
        gold_documents=("*travel-policy*", "2024 Q1 report*"),
        gold_pages=(GoldPage(document="*TRAVEL*", page=60),),
    )
    found = [passage(1, "Travel-Policy-v2.pdf", (59, 60)), passage(2, "notes.txt")]
    assert document_recall(found, item) == 0.5
    assert page_hit(found, item)
    assert document_recall([*found, passage(3, "2024 q1 Report final.docx")], item) == 1.0
    assert not page_hit([passage(1, "Travel-Policy-v2.pdf", (58, 59))], item)
    assert not page_hit([passage(2, "notes.txt", (60, 60))], item)  # right page, wrong document
