"""The CPU-only tier of docs/deploy.md: the packaged model's speed and ingestion pages/min here.

    .venv/bin/python bench/deploy_cpu.py                       # 3 answers, 1 PDF
    .venv/bin/python bench/deploy_cpu.py --answers 5 --pdf FILE --threads 2

1. llama.cpp's server with the packaged SmolLM2 (``assistant.local_llm.server_command``,
   as ``manage.py serve`` and ``make stack`` start it): for each of ``--answers`` requests
   of a short RAG-like prompt, streamed, the time to first token and the decode speed
   (tokens after the first / time after the first), as the server reports its usage.
2. Ingestion: one real PDF through the whole pipeline in this process (parse, chunk,
   embed, store, index: ``pipeline.documents_process_here``), in pages per minute.

Prints the CPU and the load average: on a shared machine the figures are an upper bound
on the time a dedicated CPU takes. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import cpu, start_packaged_llm  # noqa: E402
from harness import django_setup as setup  # noqa: E402

PROMPT = (
    "Answer from the passages only.\n\n[1] Annual leave is 30 days a year; requests are approved by the line "
    "manager.\n[2] Remote work of up to three days a week is approved by the line manager.\n\n"
    "Question: who approves remote work, and how many days of leave are there?"
)


def measure_llm(base_url: str, model: str, answers: int) -> list[tuple[float, float, int]]:
    """(time to first token s, decode tokens/s, tokens) per streamed answer."""
    import httpx

    runs = []
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 128,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    for _ in range(answers + 1):  # the first loads the model's pages: not counted
        started = time.monotonic()
        first = None
        pieces = 0
        usage_tokens = 0
        with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=300, trust_env=False) as r:
            for line in r.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                event = json.loads(line[5:])
                if event.get("usage"):
                    usage_tokens = int(event["usage"].get("completion_tokens") or 0)
                for choice in event.get("choices", []):
                    if (choice.get("delta") or {}).get("content"):
                        pieces += 1
                        if first is None:
                            first = time.monotonic()
        ended = time.monotonic()
        tokens = usage_tokens or pieces
        ttft = (first or ended) - started
        decode = (tokens - 1) / (ended - first) if first and ended > first and tokens > 1 else 0.0
        runs.append((ttft, decode, tokens))
    return runs[1:]


def measure_ingest(pdf: Path) -> tuple[int, float, int]:
    """(pages, seconds, chunks) of one PDF through the whole pipeline."""
    from ingest import pipeline, services
    from ingest.models import Collection, Document

    collection = Collection.objects.create(name="bench-deploy")
    with pdf.open("rb") as handle:
        result = services.document_upload(collection=collection, name=pdf.name, fileobj=handle, enqueue=False)
    # The embedding model loads (and picks its backend) once per worker: not counted.
    from ingest.embedding import embed_texts

    embed_texts(["warm-up"])
    started = time.monotonic()
    pipeline.documents_process_here(document_ids=[result.document.pk])
    seconds = time.monotonic() - started
    document = Document.objects.get(pk=result.document.pk)
    if document.status != Document.Status.READY:
        raise SystemExit(f"{pdf.name}: {document.status} {document.error}")
    return int(document.pages or 0), seconds, int(document.chunk_count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    default_pdf = "/work/shared/data/pdfs/us-fed-agency-reports"
    parser.add_argument("--pdf", default="", help=f"a PDF (default: the smallest in {default_pdf})")
    parser.add_argument("--no-ingest", action="store_true", help="measure the LLM only")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    setup(str(work))
    from django.conf import settings

    print(f"CPU: {cpu()}; load average {os.getloadavg()[0]:.1f} at start")
    process, base_url = start_packaged_llm(threads=args.threads, log=work / "llama.log")
    try:
        runs = measure_llm(base_url, settings.LLM_MODEL, args.answers)
    finally:
        process.terminate()
        process.wait(timeout=30)
    ttfts = [r[0] for r in runs]
    speeds = [r[1] for r in runs]
    print(f"LLM {settings.LLM_MODEL} (llama.cpp, {args.threads} threads), {len(runs)} answers:")
    print(f"  time to first token: median {statistics.median(ttfts) * 1000:.0f} ms, max {max(ttfts) * 1000:.0f} ms")
    print(f"  decode: median {statistics.median(speeds):.1f} tokens/s ({sum(r[2] for r in runs)} tokens)")
    if args.no_ingest:
        return
    pdf = Path(args.pdf) if args.pdf else min(Path(default_pdf).glob("*.pdf"), key=lambda p: p.stat().st_size)
    pages, seconds, chunks = measure_ingest(pdf)
    rate = pages / seconds * 60
    print(f"Ingestion of {pdf.name}: {pages} pages, {chunks} chunks in {seconds:.1f} s = {rate:.0f} pages/min")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
