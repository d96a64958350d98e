"""The shared SciFact data (BEIR format) for the benchmarks: where it is and how it reads.

Pure Python, no Django: ``lexical_engines.py`` runs without the product. Its metrics
(nDCG@10) are ``assistant.chat.metrics``, the ones ``manage.py evaluate`` reports. ``manage.py
evaluate`` has its own, validating reader (``assistant.chat.evaluation.beir_load``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHARED = Path(os.environ.get("ASSISTANT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
SCIFACT = SHARED / "scifact"
FORMATS = SHARED / "formats"


def corpus_rows() -> Iterator[dict[str, Any]]:
    """Every corpus line as read (``_id``, ``title``, ``text``), in file order."""
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def read_split(split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(query id -> text, query id -> {document id: grade}) for the judged queries of ``split``."""
    qrels: dict[str, dict[str, int]] = {}
    with (SCIFACT / "qrels" / f"{split}.tsv").open() as handle:
        next(handle)  # the header row
        for line in handle:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    queries: dict[str, str] = {}
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["_id"] in qrels:
                queries[row["_id"]] = row["text"]
    return queries, qrels
