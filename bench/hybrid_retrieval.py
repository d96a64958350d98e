"""Retrieval quality and latency on SciFact through the product's own retrievers.

    .venv/bin/python bench/hybrid_retrieval.py load               # chunk, embed (cached), store, index
    .venv/bin/python bench/hybrid_retrieval.py tune  --split train # fusion grid on TRAIN
    .venv/bin/python bench/hybrid_retrieval.py eval  --split test  # dense, lexical, hybrid (+ rerank)
    .venv/bin/python bench/hybrid_retrieval.py thresholds         # relevance floors, see below

``load`` turns the 5,183 abstracts into chunks with the product's chunker (title element
then text, as the text parser reads ``title\\n\\ntext``), embeds what the product embeds
(``ingest.chunking.indexed_text``) with the packaged MiniLM, caching the vectors under
``--cache`` (several minutes on 2 cores, once), and stores them as a READY collection in
the data directory given by ``ASSISTANT_DATA_DIR`` (SQLite by default), then rebuilds its
FAISS and lexical indexes with ``manage.py rebuild_index``'s service. It also ingests the
unrelated files of ``shared/data/formats`` as a second collection, through the real pipeline.

``eval`` asks every query of the split through ``build_retriever(kind, scope=...)`` for
``--chunks`` passages and ranks documents by their first passage (a document scores as its
best chunk); prints nDCG@10 and per-query retrieval latency (p50/p95, query embedding
included). ``tune`` scores the candidates of every TRAIN query once, then fuses them with
each setting of the grid. ``thresholds`` compares the relevance (cosine) of the best passage
for TRAIN queries asked of SciFact (answerable) and of the formats collection (unanswerable).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scifact import FORMATS, corpus_rows, read_split  # noqa: E402

from assistant.chat.metrics import mean_ndcg_at_k, percentile  # noqa: E402

SCIFACT_NAME = "bench-scifact"
FORMATS_NAME = "bench-formats"


def setup() -> None:
    import assistant.privacy  # noqa: F401

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _corpus_drafts() -> list[tuple[dict[str, str], Any, list[Any]]]:
    """Every abstract as the product chunks it, judged documents first, then the rest shuffled.

    The order lets ``embed`` be stopped at any point with every judged document embedded
    and a random sample of the others: ``load`` then reports how much of the corpus it holds.
    """

    from ingest.chunking import chunk_elements
    from ingest.context import described
    from ingest.embedding import count_tokens
    from ingest.parsers.base import Element
    from ingest.pipeline import chunk_max_tokens

    judged: set[str] = set()
    for split in ("train", "test"):
        for rels in read_split(split)[1].values():
            judged.update(rels)
    rows = list(corpus_rows())
    rest = [r for r in rows if r["_id"] not in judged]
    np.random.default_rng(0).shuffle(rest)
    ordered = [r for r in rows if r["_id"] in judged] + rest
    drafts = []
    for row in ordered:
        elements = [Element(text=row["title"], kind="title"), Element(text=row["text"])]
        about = described(elements, name=f"{row['_id']}.txt")
        chunks = chunk_elements(
            elements, max_tokens=chunk_max_tokens(), count_tokens=count_tokens, context=about.context
        )
        drafts.append((row, about, chunks))
    return drafts


def _cache_key() -> str:
    from ingest.embedding import model_path

    # The model's folder name, not its path: the same package in another environment.
    return "/".join(Path(model_path()).parts[-2:])


def _read_cache(cache: Path) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for path in sorted(cache.glob("batch-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            found.update(zip(data["digests"].tolist(), data["vectors"], strict=True))
    return found


def embed(args: argparse.Namespace) -> None:
    """Embed the corpus's chunk texts in batches, each saved as it is done (resumable)."""
    from ingest.embedding import embed_texts, text_digest

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    texts = [d.embedding_text for _, _, ds in _corpus_drafts() for d in ds]
    model = _cache_key()
    clock = time.perf_counter()
    for number, start in enumerate(range(0, len(texts), args.batch)):
        if number % args.shards != args.shard:
            continue
        part = texts[start : start + args.batch]
        name = hashlib.sha256("\x00".join([model, *part]).encode()).hexdigest()[:16]
        path = cache / f"batch-{name}.npz"
        if path.exists():
            continue
        vectors = embed_texts(part)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, digests=np.asarray([text_digest(t) for t in part]), vectors=vectors)
        os.replace(tmp, path)
        print(f"{start + len(part)}/{len(texts)} texts, {time.perf_counter() - clock:.0f} s", file=sys.stderr)


def load(args: argparse.Namespace) -> None:
    from django.db import transaction

    from ingest import indexes, pipeline, services
    from ingest.embedding import text_digest, to_bytes
    from ingest.models import Chunk, Collection, Document

    if not Collection.objects.filter(name=SCIFACT_NAME).exists():
        all_drafts = _corpus_drafts()
        if args.random_vectors:
            # Timing only: a flat index costs the same whatever its vectors hold, and the
            # lexical index is real. Dense and hybrid quality numbers are meaningless then.
            rng = np.random.default_rng(0)
            texts = {text_digest(d.embedding_text) for _, _, ds in all_drafts for d in ds}
            vectors = rng.standard_normal((len(texts), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            known = dict(zip(sorted(texts), vectors, strict=True))
        else:
            known = _read_cache(Path(args.cache))
        drafts = [
            (row, about, ds) for row, about, ds in all_drafts if all(text_digest(d.embedding_text) in known for d in ds)
        ]
        print(f"{SCIFACT_NAME}: {len(drafts)} of 5183 abstracts embedded (every judged one first)")
        with transaction.atomic():
            collection = services.collection_create(name=SCIFACT_NAME)
            documents = Document.objects.bulk_create(
                Document(
                    collection=collection,
                    name=f"{row['_id']}.txt",
                    title=about.title,
                    context=about.context,
                    file=f"bench/{row['_id']}.txt",
                    content_hash=hashlib.sha256(row["_id"].encode()).hexdigest(),
                    status=Document.Status.READY,
                    chunk_count=len(ds),
                )
                for row, about, ds in drafts
            )
            chunks = []
            for document, (_, _, ds) in zip(documents, drafts, strict=True):
                for ordinal, d in enumerate(ds):
                    digest = text_digest(d.embedding_text)
                    chunks.append(
                        Chunk(
                            document=document,
                            collection=collection,
                            ordinal=ordinal,
                            heading=d.heading,
                            text=d.text,
                            embedding=to_bytes(known[digest]),
                            text_hash=digest,
                        )
                    )
            Chunk.objects.bulk_create(chunks, batch_size=1000)
        clock = time.perf_counter()
        size = indexes.indexes_rebuild(collection_id=collection.pk)
        print(f"{SCIFACT_NAME}: {size} chunks indexed (FAISS + BM25) in {time.perf_counter() - clock:.1f} s")
    formats_missing = not Collection.objects.filter(name=FORMATS_NAME).exists()
    if not args.skip_formats and formats_missing and FORMATS.is_dir():
        collection = services.collection_create(name=FORMATS_NAME)
        paths = [p for p in sorted(FORMATS.iterdir()) if p.is_file() and p.name != "README.md"]
        outcomes = services.documents_upload_many(
            collection=collection, files=[(p.name, p) for p in paths], user=None, all_or_nothing=True, enqueue=False
        )
        ids = [o.result.document.pk for o in outcomes if o.result is not None]
        for document_id in ids:
            pipeline.document_process(document_id=document_id, enqueue_children=False, companions=False)
        ready = Document.objects.filter(collection=collection, status=Document.Status.READY).count()
        print(f"{FORMATS_NAME}: {ready} documents ready, {Chunk.objects.filter(collection=collection).count()} chunks")


def _collection(name: str) -> Any:
    from ingest.models import Collection

    return Collection.objects.get(name=name)


def _cached_query_vectors(queries: dict[str, str]) -> dict[str, np.ndarray]:
    from ingest.embedding import embed_texts

    texts = list(queries.values())
    vectors = embed_texts(texts)
    return dict(zip(texts, vectors, strict=True))


def _doc_ids(passages: list[Any]) -> list[str]:
    seen: list[str] = []
    for p in passages:
        did = p.document_name.removesuffix(".txt")
        if did not in seen:
            seen.append(did)
    return seen


def evaluate(args: argparse.Namespace) -> None:
    from assistant.accounts.scope import Scope
    from assistant.chat.retrieval import available_retrievers, build_retriever

    queries, qrels = read_split(args.split)
    scope = Scope.of([_collection(SCIFACT_NAME).pk])
    kinds = args.kind or available_retrievers()
    print(f"SciFact {args.split}: {len(queries)} queries, {args.chunks} passages each")
    print(f"{'retriever':10} {'nDCG@10':>8} {'p50 ms':>7} {'p95 ms':>7}")
    for kind in kinds:
        retriever = build_retriever(kind, scope=scope)
        retriever.retrieve("warm up the model and the index caches", k=args.chunks)
        ranked: dict[str, list[str]] = {}
        latencies = []
        for qid, text in queries.items():
            clock = time.perf_counter()
            passages = retriever.retrieve(text, k=args.chunks)
            latencies.append((time.perf_counter() - clock) * 1000)
            ranked[qid] = _doc_ids(passages)
        ndcg, p50, p95 = mean_ndcg_at_k(ranked, qrels, 10), percentile(latencies, 50), percentile(latencies, 95)
        print(f"{kind:10} {ndcg:8.4f} {p50:7.1f} {p95:7.1f}")


def tune(args: argparse.Namespace) -> None:
    from assistant.accounts.scope import Scope
    from assistant.chat.fusion import fuse
    from assistant.chat.retrieval import HybridRetriever

    queries, qrels = read_split(args.split)
    scope = Scope.of([_collection(SCIFACT_NAME).pk])
    vectors = _cached_query_vectors(queries)
    results: list[tuple[float, str]] = []
    for candidates in args.candidates:
        retriever = HybridRetriever(scope=scope, candidates=candidates)
        scored = {qid: retriever.candidates_scored(text, vectors[text], k=args.chunks) for qid, text in queries.items()}
        grid: list[tuple[str, float, int]] = [("convex", w / 20, 0) for w in range(0, 21)]
        grid += [("rrf", w / 10, rrf_k) for w in range(1, 10) for rrf_k in (10, 30, 60, 100)]
        for method, weight, rrf_k in grid:
            ranked = {}
            for qid, c in scored.items():
                fused = fuse(c.cosines, c.bm25, method=method, dense_weight=weight, rrf_k=rrf_k or 60)
                names = [c.rows[chunk_id].document.name.removesuffix(".txt") for chunk_id, _ in fused[: args.chunks]]
                ranked[qid] = list(dict.fromkeys(names))
            label = f"candidates={candidates} {method} dense_weight={weight:.2f}" + (f" rrf_k={rrf_k}" if rrf_k else "")
            results.append((mean_ndcg_at_k(ranked, qrels, 10), label))
    results.sort(reverse=True)
    print(f"SciFact {args.split}, {len(queries)} queries; best 15 of {len(results)} settings:")
    for score, label in results[:15]:
        print(f"  {score:.4f}  {label}")
    for score, label in results:
        if label.endswith("convex dense_weight=1.00") or label.endswith("convex dense_weight=0.00"):
            print(f"  {score:.4f}  {label}  (single retriever, rescored)")


def thresholds(args: argparse.Namespace) -> None:
    from assistant.accounts.scope import Scope
    from assistant.chat.retrieval import build_retriever

    queries, qrels = read_split("train")
    kind = args.kind[0] if args.kind else "hybrid"
    answerable = build_retriever(kind, scope=Scope.of([_collection(SCIFACT_NAME).pk]))
    unanswerable = build_retriever(kind, scope=Scope.of([_collection(FORMATS_NAME).pk]))
    best_in, gold, best_out = [], [], []
    for qid, text in queries.items():
        found = answerable.retrieve(text, k=5)
        if found:
            best_in.append(max(p.relevance or 0.0 for p in found))
        relevant = [p.relevance or 0.0 for p in found if p.document_name.removesuffix(".txt") in qrels[qid]]
        if relevant:
            gold.append(max(relevant))
        other = unanswerable.retrieve(text, k=5)
        best_out.append(max((p.relevance or 0.0 for p in other), default=0.0))
    pct = (1, 2, 5, 10, 25, 50)
    print(f"TRAIN queries: {len(queries)}; retriever {kind}, top 5")
    print("best passage, answerable (SciFact):   " + "  ".join(f"p{q}={percentile(best_in, q):.3f}" for q in pct))
    print(f"gold passage in top 5 (n={len(gold)}):        " + "  ".join(f"p{q}={percentile(gold, q):.3f}" for q in pct))
    print(
        "best passage, unanswerable (formats): "
        + "  ".join(f"p{q}={percentile(best_out, q):.3f}" for q in (50, 75, 90, 95, 99, 100))
    )
    for floor in np.arange(0.10, 0.46, 0.025):
        kept_gold = np.mean(np.asarray(gold) >= floor)
        kept_in = np.mean(np.asarray(best_in) >= floor)
        refused_out = np.mean(np.asarray(best_out) < floor)
        print(
            f"  threshold {floor:.3f}: answerable keep a passage {kept_in:6.1%}, keep their gold passage "
            f"{kept_gold:6.1%}; unanswerable left with none {refused_out:6.1%}"
        )


def floors(args: argparse.Namespace) -> None:
    """Relevance floors without a full collection: cosines of questions to their gold passages.

    For the first ``--queries`` TRAIN queries (by id): the best cosine between the query and
    the chunks of its judged documents (what an answerable question's best passage scores),
    and the best cosine between the query and every chunk of the text formats of
    ``shared/data/formats`` (what the best passage of an unrelated collection scores).
    """
    from ingest.chunking import chunk_elements
    from ingest.context import described
    from ingest.embedding import count_tokens, embed_texts
    from ingest.parsers import parse_file
    from ingest.pipeline import chunk_max_tokens

    queries, qrels = read_split("train")
    chosen = sorted(queries, key=lambda q: int(q.split("-")[-1]) if q.split("-")[-1].isdigit() else q)
    chosen = chosen[: args.queries]
    rows = {row["_id"]: row for row in corpus_rows()}

    from ingest.parsers.base import Element

    def chunks_of(elements: list[Any], name: str) -> list[str]:
        about = described(elements, name=name)
        drafts = chunk_elements(
            elements, max_tokens=chunk_max_tokens(), count_tokens=count_tokens, context=about.context
        )
        return [d.embedding_text for d in drafts]

    gold_texts: dict[str, list[str]] = {}
    for qid in chosen:
        for did in qrels[qid]:
            if did in rows and did not in gold_texts:
                row = rows[did]
                gold_texts[did] = chunks_of([Element(text=row["title"], kind="title"), Element(text=row["text"])], did)
    other: list[str] = []
    for path in sorted(FORMATS.iterdir()):
        if path.suffix.lower() in {".txt", ".md", ".html", ".csv", ".eml", ".docx"}:
            try:
                _, parsed = parse_file(path, name=path.name)
            except Exception as exc:  # a bench: report and go on
                print(f"skipped {path.name}: {exc}", file=sys.stderr)
                continue
            other += chunks_of(parsed.elements, path.name)
    flat = [t for texts in gold_texts.values() for t in texts]
    clock = time.perf_counter()
    vectors = embed_texts(flat + other)
    query_vectors = embed_texts([queries[q] for q in chosen])
    print(f"embedded {len(flat)} gold + {len(other)} unrelated chunks in {time.perf_counter() - clock:.0f} s")
    gold_vectors = dict(zip(flat, vectors[: len(flat)], strict=True))
    other_vectors = vectors[len(flat) :]
    gold, unrelated = [], []
    for qid, qv in zip(chosen, query_vectors, strict=True):
        best = max(
            float(np.dot(qv, gold_vectors[t])) for did in qrels[qid] if did in gold_texts for t in gold_texts[did]
        )
        gold.append(best)
        unrelated.append(float((other_vectors @ qv).max()))
    pct = (1, 2, 5, 10, 25, 50)
    print(f"{len(chosen)} TRAIN queries; {len(other)} unrelated chunks from {FORMATS.name}/")
    print("gold passage cosine:       " + "  ".join(f"p{q}={percentile(gold, q):.3f}" for q in pct))
    print(
        "best unrelated cosine:     "
        + "  ".join(f"p{q}={percentile(unrelated, q):.3f}" for q in (50, 75, 90, 95, 99, 100))
    )
    for floor in np.arange(0.10, 0.51, 0.025):
        print(
            f"  {floor:.3f}: gold passage kept {np.mean(np.asarray(gold) >= floor):6.1%}, "
            f"unrelated best passage dropped {np.mean(np.asarray(unrelated) < floor):6.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["embed", "load", "eval", "tune", "thresholds", "floors"])
    parser.add_argument("--split", default="test")
    parser.add_argument("--kind", action="append")
    parser.add_argument("--chunks", type=int, default=30, help="passages asked per query")
    parser.add_argument("--candidates", type=int, action="append", help="tune: RETRIEVAL_CANDIDATES values")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "assistant" / "bench-retrieval"))
    parser.add_argument("--skip-formats", action="store_true", help="load: SciFact only")
    parser.add_argument(
        "--random-vectors", action="store_true", help="load: random unit vectors (latency and lexical only)"
    )
    parser.add_argument("--queries", type=int, default=60, help="floors: TRAIN queries used")
    parser.add_argument("--batch", type=int, default=128, help="embed: texts per saved batch")
    parser.add_argument("--shard", type=int, default=0, help="embed: this process's share (0-based)")
    parser.add_argument("--shards", type=int, default=1, help="embed: processes sharing the work")
    args = parser.parse_args()
    args.candidates = args.candidates or [50]
    setup()
    {"embed": embed, "load": load, "eval": evaluate, "tune": tune, "thresholds": thresholds, "floors": floors}[
        args.command
    ](args)


if __name__ == "__main__":
    main()
