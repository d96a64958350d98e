"""Lexical engines on SciFact, side by side: quality, build time, query latency.

    .venv/bin/python bench/lexical_engines.py [--split train] [--repeat 1]

Each engine indexes the 5,183 abstracts (title and text, one document each) and answers
the split's queries; printed per engine: nDCG@10, index build seconds, query p50/p95 ms
(one query at a time, as the chat asks them), and how it handles a delete. Engines that
are not installed are skipped with a note. Run it on an otherwise idle machine.

- ``bm25s``: BM25 (Lucene variant, k1=1.5, b=0.75) over a precomputed sparse score
  matrix, English stop words and Snowball stemming (PyStemmer).
- ``tantivy``: the Rust engine's Python bindings, its ``en_stem`` tokenizer, BM25.
- ``sqlite-fts5``: SQLite's FTS5 with the ``porter`` tokenizer, ranked by ``bm25()``.

PostgreSQL full-text search is not measured here: ``ts_rank`` is not BM25 (no document
length normalisation against the collection's average, no idf), and the product must rank
the same on SQLite and PostgreSQL, which rules out either database's own engine unless both
exist and agree.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for its pure metrics module
from scifact import corpus_rows, read_split

from assistant.chat.metrics import mean_ndcg_at_k, percentile

Search = Callable[[str, int], list[str]]


def load(split: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {row["_id"]: f"{row['title']}\n{row['text']}" for row in corpus_rows()}
    return (corpus, *read_split(split))


def build_bm25s(corpus: dict[str, str]) -> Search:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    tokens = bm25s.tokenize(list(corpus.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)

    def search(query: str, k: int) -> list[str]:
        q = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        scores = model.get_scores(q) if q else None
        if scores is None:
            return []
        import numpy as np

        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return [ids[i] for i in top if scores[i] > 0]

    return search


def build_tantivy(corpus: dict[str, str]) -> Search:
    import tantivy

    schema_builder = tantivy.SchemaBuilder()
    schema_builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
    schema_builder.add_integer_field("rid", stored=True, indexed=True)
    schema = schema_builder.build()
    folder = tempfile.mkdtemp(prefix="tantivy-")
    index = tantivy.Index(schema, path=folder)
    writer = index.writer(heap_size=100_000_000, num_threads=1)
    ids = list(corpus)
    for n, did in enumerate(ids):
        writer.add_document(tantivy.Document(body=corpus[did], rid=n))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()

    def search(query: str, k: int) -> list[str]:
        # Free text: quote-free terms ORed; the parser chokes on stray syntax, so strip it.
        cleaned = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in query)
        parsed = index.parse_query(cleaned, ["body"])
        hits = searcher.search(parsed, k).hits
        return [ids[searcher.doc(address)["rid"][0]] for _, address in hits]

    return search


def build_fts5(corpus: dict[str, str]) -> Search:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE docs USING fts5(body, tokenize='porter unicode61')")
    ids = list(corpus)
    connection.executemany("INSERT INTO docs(rowid, body) VALUES (?, ?)", ((n, corpus[d]) for n, d in enumerate(ids)))
    connection.commit()

    def search(query: str, k: int) -> list[str]:
        words = ["".join(ch for ch in w if ch.isalnum()) for w in query.split()]
        match = " OR ".join(f'"{w}"' for w in words if w)
        if not match:
            return []
        rows = connection.execute(
            "SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?", (match, k)
        ).fetchall()
        return [ids[r[0]] for r in rows]

    return search


ENGINES: dict[str, tuple[Callable[[dict[str, str]], Search], str]] = {
    "bm25s": (
        build_bm25s,
        "no delete: the score matrix is rebuilt (from stored text) when a collection changes",
    ),
    "tantivy": (build_tantivy, "delete_documents(field, id) + commit; segments merge in the background"),
    "sqlite-fts5": (build_fts5, "DELETE FROM docs WHERE rowid=?; SQLite only, PostgreSQL ranks differently"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="train")
    parser.add_argument("--engine", action="append", choices=sorted(ENGINES))
    args = parser.parse_args()
    corpus, queries, qrels = load(args.split)
    print(f"SciFact {args.split}: {len(corpus)} documents, {len(queries)} queries")
    print(f"{'engine':12} {'nDCG@10':>8} {'build s':>8} {'p50 ms':>7} {'p95 ms':>7}  deletes")
    for name in args.engine or list(ENGINES):
        build, deletes = ENGINES[name]
        try:
            clock = time.perf_counter()
            search = build(corpus)
            built = time.perf_counter() - clock
        except ImportError as exc:
            print(f"{name:12} skipped: {exc}", file=sys.stderr)
            continue
        ranked: dict[str, list[str]] = {}
        latencies = []
        for qid, text in queries.items():
            clock = time.perf_counter()
            ranked[qid] = search(text, 10)
            latencies.append((time.perf_counter() - clock) * 1000)
        ndcg, p50, p95 = mean_ndcg_at_k(ranked, qrels, 10), percentile(latencies, 50), percentile(latencies, 95)
        print(f"{name:12} {ndcg:8.4f} {built:8.2f} {p50:7.2f} {p95:7.2f}  {deletes}")


if __name__ == "__main__":
    main()
