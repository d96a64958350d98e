"""How a hybrid search's candidate scores become one ranking.

``fuse`` mixes the dense and the lexical scores of the same candidates;
``with_document_prior`` leans a passage's score on how its document matched as a whole;
``with_matches`` adds what the question names (``assistant.chat.document_match``).
Pure functions of scores: the retriever (``assistant.chat.retrieval``) gathers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np


class _Located(Protocol):
    document_id: int


def fuse(
    dense: dict[int, float],
    lexical_scores: dict[int, float],
    *,
    method: str,
    dense_weight: float,
    rrf_k: int,
) -> list[tuple[int, float]]:
    """Candidates (chunk id, fused score), best first.

    ``dense`` and ``lexical_scores`` score the same candidates (a candidate one search
    did not propose is still scored by it, see ``HybridRetriever``), so neither method
    has to guess a missing score.

    * ``convex``: ``w * (cos - min cos) / (max cos - min cos) + (1 - w) * bm25 / max bm25``:
      BM25 has no fixed scale, cosines crowd a narrow band; both are mapped onto [0, 1]
      over the candidates before they are mixed.
    * ``rrf``: ``w / (rrf_k + dense rank) + (1 - w) / (rrf_k + lexical rank)``.
    """
    ids = list(dense)
    if not ids:
        return []
    if method == "rrf":
        dense_rank = {c: r for r, c in enumerate(sorted(ids, key=lambda c: -dense[c]), start=1)}
        lexical_rank = {c: r for r, c in enumerate(sorted(ids, key=lambda c: -lexical_scores.get(c, 0.0)), start=1)}
        fused = {
            c: dense_weight / (rrf_k + dense_rank[c])
            + ((1 - dense_weight) / (rrf_k + lexical_rank[c]) if lexical_scores.get(c, 0.0) > 0 else 0.0)
            for c in ids
        }
    elif method == "convex":
        cosines = np.asarray([dense[c] for c in ids], dtype=np.float64)
        low, high = float(cosines.min()), float(cosines.max())
        spread = high - low if high > low else 1.0
        best_bm25 = max((lexical_scores.get(c, 0.0) for c in ids), default=0.0) or 1.0
        fused = {
            c: dense_weight * (dense[c] - low) / spread + (1 - dense_weight) * lexical_scores.get(c, 0.0) / best_bm25
            for c in ids
        }
    else:
        raise ValueError(f"Unknown fusion {method!r}: use convex or rrf.")
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def with_document_prior(
    fused: list[tuple[int, float]], document_of: Mapping[int, int], *, weight: float, top: int
) -> list[tuple[int, float]]:
    """Fused candidates re-scored with how well their document as a whole matched, best first.

    A question is most often about one document ("3M's capital expenditure in 2018"): a
    passage of the document whose best ``top`` passages all score well is more likely
    the answer than an equally scored passage from a document that matched once. Each
    score becomes ``(1 - weight) * score / best + weight * document score``, the document
    score being the mean of its ``top`` best normalised scores (missing ones count 0).
    """
    if not fused or weight <= 0:
        return fused
    best = fused[0][1] or 1.0
    per_document: dict[int, list[float]] = {}
    for chunk_id, score in fused:  # best first: each document's list is sorted
        per_document.setdefault(document_of[chunk_id], []).append(score / best)
    prior = {d: sum(scores[:top]) / top for d, scores in per_document.items()}
    rescored = [(c, (1 - weight) * s / best + weight * prior[document_of[c]]) for c, s in fused]
    return sorted(rescored, key=lambda item: (-item[1], item[0]))


def with_matches(
    fused: list[tuple[int, float]],
    rows: Mapping[int, _Located],
    *,
    documents: Mapping[int, float],
    sections: Mapping[int, float],
    document_weight: float,
    heading_weight: float,
) -> list[tuple[int, float]]:
    """Fused candidates with what the question names added (``document_match``), best first.

    Each score becomes ``score / best + document_weight * document match + heading_weight *
    section coverage`` (``documents`` by document id, ``sections`` by chunk id): a passage
    of the document the question names, under the section it names, rises above an
    equally worded passage of another report or another section.
    """
    if not fused or not (documents or sections):
        return fused
    best = fused[0][1] or 1.0
    rescored = [
        (
            c,
            s / best
            + document_weight * documents.get(rows[c].document_id, 0.0)
            + heading_weight * sections.get(c, 0.0),
        )
        for c, s in fused
    ]
    return sorted(rescored, key=lambda item: (-item[1], item[0]))
