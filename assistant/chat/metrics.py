"""Retrieval metrics and latency percentiles: pure functions, no Django, no numpy.

``manage.py evaluate`` (``assistant.chat.evaluation``) and the scripts in ``bench/``
compute their figures here, so an nDCG or a p95 means the same in every report.
The metrics follow the definitions BEIR reports (through trec_eval): linear gains
for nDCG, recall over the judged-relevant documents (score > 0), MRR as the
reciprocal rank of the first relevant document. Percentiles interpolate linearly
between ranks, as numpy's default does.

Importing this module imports nothing of the product's: the benchmarks that run
without Django (``bench/lexical_engines.py``) use it too.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

Doc = TypeVar("Doc", bound=Hashable)


def ndcg_at_k(ranked: Sequence[Doc], relevance: Mapping[Doc, int], k: int) -> float:
    """nDCG@k with graded relevance and linear gains (trec_eval's ``ndcg_cut``)."""
    gains = sorted((g for g in relevance.values() if g > 0), reverse=True)
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]))
    if ideal == 0:
        return 0.0
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if relevance.get(doc, 0) > 0)
    return dcg / ideal


def mean_ndcg_at_k(
    ranked: Mapping[str, Sequence[Doc]],
    qrels: Mapping[str, Mapping[Doc, int]],
    k: int,
    *,
    over: Sequence[str] | None = None,
) -> float:
    """nDCG@k averaged over queries: ``over`` them, or else every judged query of ``qrels``.

    A query with no ranking scores 0, as does one without judged-relevant documents.
    """
    queries = list(qrels) if over is None else list(over)
    if not queries:
        raise ValueError("nDCG of no queries")
    return sum(ndcg_at_k(ranked.get(q, ()), qrels.get(q, {}), k) for q in queries) / len(queries)


def recall_at_k(ranked: Sequence[Doc], relevant: AbstractSet[Doc], k: int) -> float:
    """The share of the relevant documents found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def mrr_at_k(ranked: Sequence[Doc], relevant: AbstractSet[Doc], k: int) -> float:
    for position, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / position
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))
