"""Retrieval at scale: exact and approximate FAISS indexes at 100k and 1M chunks.

    .venv/bin/python bench/retrieval_scale.py                        # 100,000 and 1,000,000
    .venv/bin/python bench/retrieval_scale.py --sizes 100000 --queries 200 --real 0

Vectors are synthetic but fitted to real ones: ``--real`` SciFact abstracts are embedded
with the product's own model (all-MiniLM-L6-v2, 384-d); their mean and covariance (shrunk
towards a sphere) and the share of their variance left inside k-means clusters define a
mixture of Gaussians. Topic centres are drawn from the between-cluster part, chunks around
them from the within-cluster part, topic sizes are log-normal (a few large topics, many
small ones), and every vector is L2-normalised. Queries are held-out draws from the same
mixture, never in the index. ``--real 0`` skips the model and uses the same construction
around an isotropic covariance (less realistic; for a machine without the model).

For every size, both index types go through the product's own code (``ingest.index``):
``index_build`` builds, the file is written the way writers write it, and every query is
one ``index_search`` call, one query at a time as a chat request makes it:

* build s: ``index_build`` in memory (for IVF: training on a sample, adding, calibrating
  nprobe); write s: writing the file (fsync included);
* MB: the index file (what a reader holds in memory or maps), and the process's RSS;
* p50/p95 ms: ``index_search`` latency with k=10, then again with 1,000 chunk ids hidden
  through ``exclude`` (how per-document permissions are applied); for IVF also with the
  reader mapping the file's lists (``INDEX_MMAP=true``) instead of reading it (the default);
* Recall@10: the share of exact search's top 10 found in the index's top 10;
* upsert s: ``index_upsert`` of 640 new chunks replacing 64 (one ingest batch) into the
  file, and reload s: the first search of a reader after that write.

``--sweep`` also times a bare exact index at growing sizes (where the threshold goes).
The numbers depend on the machine and on whatever else it runs: the load average is
printed beside them.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", REPO.parent / "shared" / "data"))
SCIFACT = SHARED_DATA / "scifact"
DIMS = 384
K = 10
BLOCK = 65_536  # rows generated at a time: no float64 copy of a 1M x 384 array
HIDDEN = 1_000
UPSERT_ADD, UPSERT_REPLACE = 640, 64


# --- the synthetic vectors -------------------------------------------------------------


def real_embeddings(count: int) -> np.ndarray:
    """The product's embeddings of the first ``count`` SciFact abstracts (title + text)."""
    from ingest.embedding import embed_texts

    texts: list[str] = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(f"{row['title']}\n\n{row['text']}")
            if len(texts) >= count:
                break
    return np.asarray(embed_texts(texts), dtype=np.float32)


def _normalised(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32, copy=False)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


@dataclass
class Mixture:
    """Topic centres plus a within-topic spread, both shaped by a fitted covariance."""

    mean: np.ndarray  # (d,)
    chol: np.ndarray  # (d, d), lower: noise = z @ chol.T has the fitted covariance
    within: float  # share of the variance inside a topic
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, DIMS), np.float32))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def fit(cls, real: np.ndarray | None, *, seed: int) -> Mixture:
        import faiss

        if real is None:
            # No model: an isotropic spread with the within share real MiniLM data shows
            # (see the doc); the mean is a random direction of the same length.
            rng = np.random.default_rng(seed)
            mean = rng.normal(size=DIMS)
            mean *= 0.35 / np.linalg.norm(mean)
            return cls(mean=mean, chol=np.eye(DIMS) * math.sqrt((1 - 0.35**2) / DIMS), within=0.75)
        mean = real.mean(axis=0).astype(np.float64)
        cov = np.cov(real.T.astype(np.float64))
        shrink = 0.1  # fewer samples than a 384 x 384 covariance has free parameters
        cov = (1 - shrink) * cov + shrink * np.trace(cov) / DIMS * np.eye(DIMS)
        clusters = max(2, len(real) // 16)
        kmeans = faiss.Kmeans(DIMS, clusters, niter=20, seed=seed, spherical=True, min_points_per_centroid=8)
        kmeans.train(real)
        _, assigned = kmeans.index.search(real, 1)
        members = [real[assigned[:, 0] == c] for c in range(clusters)]
        inside = sum(float(((m - m.mean(axis=0)) ** 2).sum()) for m in members if len(m))
        total = float(((real - real.mean(axis=0)) ** 2).sum())
        return cls(mean=mean, chol=np.linalg.cholesky(cov), within=inside / total)

    def with_topics(self, topics: int, *, seed: int) -> Mixture:
        rng = np.random.default_rng(seed)
        spread = math.sqrt(1 - self.within)
        centres = self.mean + spread * (rng.normal(size=(topics, DIMS)) @ self.chol.T)
        weights = rng.lognormal(0.0, 1.0, size=topics)
        return Mixture(self.mean, self.chol, self.within, centres.astype(np.float32), weights / weights.sum())

    def blocks(self, rows: int, *, seed: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        chol = self.chol.astype(np.float32)
        spread = np.float32(math.sqrt(self.within))
        done = 0
        while done < rows:
            size = min(BLOCK, rows - done)
            topic = rng.choice(len(self.centres), size=size, p=self.weights)
            noise = rng.standard_normal(size=(size, DIMS), dtype=np.float32) @ chol.T
            yield _normalised(self.centres[topic] + spread * noise)
            done += size

    def sample(self, rows: int, *, seed: int) -> np.ndarray:
        out = np.empty((rows, DIMS), np.float32)
        at = 0
        for block in self.blocks(rows, seed=seed):
            out[at : at + len(block)] = block
            at += len(block)
        return out


def neighbour_profile(vectors: np.ndarray) -> tuple[float, float]:
    """(mean cosine between two vectors, mean cosine of each vector's nearest other one)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, np.nan)
    return float(np.nanmean(sims)), float(np.nanmean(np.nanmax(sims, axis=1)))


# --- measuring -------------------------------------------------------------------------


def _status_mb(field_name: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _status_mb("VmRSS")


def load() -> float:
    return os.getloadavg()[0]


def latencies_ms(collection_id: int, queries: np.ndarray, exclude: Sequence[int] = ()) -> list[float]:
    from ingest import index

    out = []
    for query in queries:
        start = time.perf_counter()
        index.index_search(collection_id=collection_id, vector=query, k=K, exclude=exclude)
        out.append((time.perf_counter() - start) * 1000)
    return out


def ann_recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Recall@K of the index's hits against the exact search's, averaged over the queries."""
    from assistant.chat.metrics import recall_at_k

    return float(np.mean([recall_at_k(list(f), set(e[:K]), K) for f, e in zip(found, exact, strict=True)]))


@dataclass
class Row:
    size: int
    kind: str
    picked: bool  # the type the product picks at this size with the default threshold
    build_s: float
    write_s: float
    file_mb: float
    rss_mb: float
    p50_ms: float
    p95_ms: float
    p95_hidden_ms: float
    mapped_ms: tuple[float, float] | None  # IVF: p50/p95 with the reader's lists mapped
    recall: float
    upsert_s: float
    reload_s: float
    detail: str
    load: float


def measure(
    *,
    collection_id: int,
    kind: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    exact: np.ndarray | None,
    extra: np.ndarray,
    default_max: int,
    timed_queries: int,
) -> tuple[Row, np.ndarray]:
    """Build, write, search and upsert one index type; returns its row and its top-10 ids."""
    from django.conf import settings

    from assistant.chat.metrics import percentile
    from ingest import index

    size = len(ids)
    # The type is forced by moving the threshold; the upsert below stays the same type.
    settings.INDEX_EXACT_MAX = size * 10 if kind == "flat" else 0
    started_load = load()
    start = time.perf_counter()
    built = index.index_build(ids=ids, vectors=vectors)
    build_s = time.perf_counter() - start
    detail = f"nlist {built.nlist}, nprobe {built.nprobe}" if kind == "ivf" else "exact"
    path = index.index_path(collection_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    index.index_write(built, path)  # what every writer does after building
    write_s = time.perf_counter() - start
    del built
    gc.collect()
    file_mb = path.stat().st_size / 2**20

    latencies_ms(collection_id, queries[:1])  # loads it, as a reader's first search would
    timed = queries[:timed_queries]
    plain = latencies_ms(collection_id, timed)
    rng = np.random.default_rng(size)
    hidden = [int(i) for i in rng.choice(ids, size=HIDDEN, replace=False)]
    with_hidden = latencies_ms(collection_id, timed, exclude=hidden)
    mapped_ms = None
    if kind == "ivf":  # the same file, read by a reader that maps its lists
        default_mmap = settings.INDEX_MMAP
        settings.INDEX_MMAP = True
        index.index_forget_loaded()
        latencies_ms(collection_id, queries[:1])
        mapped = latencies_ms(collection_id, timed)
        mapped_ms = (percentile(mapped, 50), percentile(mapped, 95))
        settings.INDEX_MMAP = default_mmap
        index.index_forget_loaded()
        latencies_ms(collection_id, queries[:1])
    loaded: Any = index.index_load(collection_id)
    found = np.asarray(
        [[h.chunk_id for h in index.index_search(collection_id=collection_id, vector=q, k=K)] for q in queries]
    )
    if exact is None:  # the flat index is the ground truth; batched, as it is not timed
        _, exact = loaded.search(queries, K)
    recall = ann_recall(found, exact)
    resident = rss_mb()
    del loaded
    index.index_forget_loaded()  # the reader's copy: one large index in memory at a time

    # One ingest batch: new versions of UPSERT_REPLACE chunks and the rest new chunks.
    new_ids = ids[-1] + 1 + np.arange(UPSERT_ADD - UPSERT_REPLACE)
    start = time.perf_counter()
    index.index_upsert(
        collection_id=collection_id,
        ids=[int(i) for i in np.concatenate([ids[:UPSERT_REPLACE], new_ids])],
        vectors=extra[:UPSERT_ADD],
    )
    upsert_s = time.perf_counter() - start
    start = time.perf_counter()
    latencies_ms(collection_id, queries[:1])
    reload_s = time.perf_counter() - start
    index.index_delete(collection_id=collection_id)
    gc.collect()
    picked = (kind == "ivf") == (size > default_max)
    row = Row(
        size, kind, picked, build_s, write_s, file_mb, resident,
        percentile(plain, 50), percentile(plain, 95), percentile(with_hidden, 95), mapped_ms,
        recall, upsert_s, reload_s, detail, max(started_load, load()),
    )  # fmt: skip
    print(json.dumps(row.__dict__), flush=True)
    return row, exact


def sweep(vectors: np.ndarray, queries: np.ndarray, sizes: Sequence[int]) -> list[tuple[int, float, float, float]]:
    """A bare exact index on the first ``size`` vectors: single-query p50/p95 ms on one
    thread (as ``index_search`` runs it) and p95 ms on all of OpenMP's threads."""
    import faiss

    from assistant.chat.metrics import percentile

    out = []
    for size in sizes:
        flat = faiss.IndexFlatIP(DIMS)
        flat.add(vectors[:size])
        by_threads = {}
        for threads in (1, faiss.omp_get_max_threads()):
            previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(threads)
            times = []
            for query in queries:
                start = time.perf_counter()
                flat.search(query.reshape(1, -1), K)
                times.append((time.perf_counter() - start) * 1000)
            faiss.omp_set_num_threads(previous)
            by_threads[threads] = times
        one, every = by_threads[1], by_threads[max(by_threads)]
        out.append((size, percentile(one, 50), percentile(one, 95), percentile(every, 95)))
        print(f"sweep {size}: 1 thread p50/p95 {out[-1][1]:.2f}/{out[-1][2]:.2f} ms, all {out[-1][3]:.2f}", flush=True)
        del flat
    return out


# --- the report ------------------------------------------------------------------------


def render(rows: list[Row], swept: list[tuple[int, float, float, float]], notes: list[str]) -> str:
    lines = [
        "| chunks | index | picked | build s | write s | file MB | RSS MB | p50 ms | p95 ms "
        f"| p95 ms, {HIDDEN:,} hidden | p50/p95 ms, lists mapped | Recall@10 | upsert s | reload s "
        "| parameters | load |",
        "| ---: | --- | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.size:,} | {r.kind} | {'yes' if r.picked else ''} | {r.build_s:.1f} | {r.write_s:.1f} "
            f"| {r.file_mb:,.0f} | {r.rss_mb:,.0f} | {r.p50_ms:.2f} | {r.p95_ms:.2f} | {r.p95_hidden_ms:.2f} "
            f"| {'' if r.mapped_ms is None else f'{r.mapped_ms[0]:.2f} / {r.mapped_ms[1]:.2f}'} "
            f"| {r.recall:.3f} | {r.upsert_s:.2f} | {r.reload_s:.3f} | {r.detail} | {r.load:.1f} |"
        )
    if swept:
        lines += [
            "",
            "| chunks, bare exact index | p50 ms, 1 thread | p95 ms, 1 thread | p95 ms, all threads |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [f"| {size:,} | {p50:.2f} | {p95:.2f} | {every:.2f} |" for size, p50, p95, every in swept]
    return "\n".join([*lines, "", *notes])


def main() -> None:
    # Run as a script, this file's folder leads sys.path; the project's packages come first.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(REPO), *(p for p in sys.path if p and Path(p).resolve() != here)]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300, help="held-out queries per size")
    parser.add_argument("--flat-timed", type=int, default=100, help="queries timed on exact indexes over the threshold")
    parser.add_argument("--real", type=int, default=512, help="SciFact abstracts to fit the mixture on (0: none)")
    parser.add_argument("--chunks-per-topic", type=int, default=200)
    parser.add_argument("--sweep", type=int, nargs="*", default=[10_000, 25_000, 50_000, 100_000, 200_000])
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as data_dir:
        os.environ["ASSISTANT_DATA_DIR"] = data_dir
        report = run(args)
    print(report)
    if args.markdown:
        args.markdown.write_text(report + "\n")


def run(args: argparse.Namespace) -> str:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from django.conf import settings

    default_max = int(settings.INDEX_EXACT_MAX)
    notes = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average at start {load():.1f}. Threshold INDEX_EXACT_MAX={default_max:,}, "
        f"INDEX_IVF_RECALL={settings.INDEX_IVF_RECALL}."
    ]
    start = time.perf_counter()
    real = real_embeddings(args.real) if args.real else None
    base = Mixture.fit(real, seed=1)
    fitted = f"{args.real} SciFact abstracts" if real is not None else "no real vectors (isotropic)"
    notes.append(f"Mixture fitted on {fitted}: within-topic share of variance {base.within:.2f}.")
    if real is not None:
        synthetic = base.with_topics(max(16, len(real) // 16), seed=2).sample(len(real), seed=3)
        (real_mean, real_nn), (syn_mean, syn_nn) = neighbour_profile(real), neighbour_profile(synthetic)
        notes.append(
            f"Realism at {len(real)} vectors: mean cosine real {real_mean:.3f} / synthetic {syn_mean:.3f}, "
            f"mean nearest-neighbour cosine real {real_nn:.3f} / synthetic {syn_nn:.3f}."
        )
    print(notes[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)

    rows: list[Row] = []
    swept: list[tuple[int, float, float, float]] = []
    for number, size in enumerate(sorted(args.sizes)):
        mixture = base.with_topics(max(16, size // args.chunks_per_topic), seed=10 + number)
        start = time.perf_counter()
        vectors = mixture.sample(size, seed=100 + number)
        queries = mixture.sample(args.queries, seed=200 + number)
        extra = mixture.sample(UPSERT_ADD, seed=300 + number)
        ids = np.arange(1, size + 1, dtype=np.int64)
        print(f"{size:,} vectors generated in {time.perf_counter() - start:.1f} s", flush=True)
        if number == len(args.sizes) - 1 and args.sweep:
            swept = sweep(vectors, queries[: min(len(queries), 100)], [s for s in args.sweep if s <= size])
        common: dict[str, Any] = {"ids": ids, "vectors": vectors, "queries": queries, "extra": extra}
        # Exact search at 1M takes a good fraction of a second a query: fewer are timed.
        slow = args.flat_timed if size > default_max else args.queries
        flat, exact = measure(
            collection_id=1, kind="flat", exact=None, default_max=default_max, timed_queries=slow, **common
        )
        ivf, _ = measure(
            collection_id=2, kind="ivf", exact=exact, default_max=default_max, timed_queries=args.queries, **common
        )
        rows += [flat, ivf]
        del vectors, common
        gc.collect()
    notes.append(f"Peak RSS of the whole run: {_status_mb('VmHWM'):,.0f} MB; load average at the end {load():.1f}.")
    return render(rows, swept, notes)


if __name__ == "__main__":
    main()
