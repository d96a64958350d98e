"""Embedding backends side by side on real text: speed, and faithfulness to torch float32.

    .venv/bin/python bench/embedding_backends.py [--limit 2000] [--backends onnx,openvino] [--repeat 1]

Embeds the first ``--limit`` SciFact abstracts (title and text; each one text, truncated
at the model's 256-piece window exactly as the product truncates) with each backend, built
by the product's own code (``ingest.embedding_backends``), and prints per backend: chunks/s,
the ratio to torch-fp32, the min and mean cosine of its vectors to torch-fp32's, and whether
``EMBEDDING_BACKEND=auto`` would accept it (every cosine >= 0.999). Texts go in calls of
``--call-size`` (about what one ingestion batch of 64 files embeds), batches of
``EMBEDDING_BATCH_SIZE``; each backend embeds one batch first to warm up, then the backends
take turns call by call, so that the load of a shared machine falls on all of them alike.
Speed is given twice: chunks/s by the wall clock, and the process's CPU seconds per 1,000
chunks (less sensitive to other processes, blind to how well a backend uses the cores).
The ONNX Runtime and OpenVINO backends also run with texts in the caller's order
(``unsorted``) to show what sorting them by length saves (sentence-transformers sorts the
torch backends' texts itself).

The CPU's model name and the flags that matter (AVX2, AVX512-BF16, AMX) are printed first,
then what ``auto``'s calibration measures and picks on this machine. By default the
backends tried are those ``auto`` would try here (torch-bf16 only where the CPU has
AMX/AVX512-BF16); ``--backends`` names others. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scifact import corpus_rows  # noqa: E402


def setup() -> None:
    import assistant.privacy  # noqa: F401

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000, help="abstracts, in corpus order (default 2000)")
    parser.add_argument("--backends", default="", help="comma-separated; default: what auto tries on this CPU")
    parser.add_argument("--no-unsorted", action="store_true", help="skip the unsorted ONNX/OpenVINO runs")
    parser.add_argument("--call-size", type=int, default=160, help="texts per embed call (default 160)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the texts; times are summed")
    args = parser.parse_args()
    setup()

    from django.conf import settings
    from sentence_transformers import SentenceTransformer

    from ingest import embedding, embedding_backends, embedding_onnx
    from ingest.embedding_backends import Backend, Source

    texts = [f"{row['title']}\n{row['text']}" for _, row in zip(range(args.limit), corpus_rows(), strict=False)]
    batch_size = int(settings.EMBEDDING_BATCH_SIZE)
    print(f"CPU: {embedding_backends.cpu_summary()}")
    print(f"torch threads: {__import__('torch').get_num_threads()}, affinity: {len(os.sched_getaffinity(0))} CPUs")

    model = SentenceTransformer(embedding.model_path(), device="cpu", local_files_only=True)
    source = Source(model=model, path=Path(embedding.model_path()), cache_dir=Path(settings.EMBEDDING_CACHE_DIR))
    lengths = [
        len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    ]
    at_window = sum(length == model.max_seq_length for length in lengths)
    print(
        f"{len(texts)} SciFact abstracts: {np.mean(lengths):.0f} word pieces on average after truncation, "
        f"{at_window} at the full {model.max_seq_length}-piece window; "
        f"calls of {args.call_size}, batches of {batch_size}"
    )

    start = time.perf_counter()
    chosen, trials = embedding_backends.calibrate(source)
    print(f"\nauto's calibration ({time.perf_counter() - start:.1f} s, ONNX export and compilation included):")
    for trial in trials:
        print(f"  {trial}")
    print(f"  -> {chosen.name}")

    if args.backends:
        names = args.backends.split(",")
    else:
        names = [c.name for c in embedding_backends.CANDIDATES if c.applicable()]
    names = ["torch-fp32", *(name for name in names if name != "torch-fp32")]  # the reference, first
    runs: list[tuple[str, Backend]] = []
    for name in names:
        runs.append((name, embedding_backends.build(name, source)))
        if args.no_unsorted:
            continue
        if name == "onnx":
            runs.append(("onnx unsorted", embedding_onnx.onnxruntime_backend(source, sort_by_length=False)))
        elif name == "openvino":
            bf16 = embedding_backends.cpu_has_native_bf16()
            runs.append(("openvino unsorted", embedding_onnx.openvino_backend(source, bf16=bf16, sort_by_length=False)))

    # Round robin, one call at a time: on a shared machine every backend sees the same load.
    for _, backend in runs:
        backend.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    wall = dict.fromkeys(range(len(runs)), 0.0)
    cpu = dict.fromkeys(range(len(runs)), 0.0)
    parts: dict[int, list[np.ndarray]] = {n: [] for n in range(len(runs))}
    for repeat in range(args.repeat):
        for n in parts:
            parts[n] = []
        for i in range(0, len(texts), args.call_size):
            for n, (_, backend) in enumerate(runs):
                started, started_cpu = time.perf_counter(), time.process_time()
                parts[n].append(backend.encode(texts[i : i + args.call_size], batch_size=batch_size))
                wall[n] += time.perf_counter() - started
                cpu[n] += time.process_time() - started_cpu
        print(
            f"  pass done: {', '.join(f'{runs[n][0]} {len(texts) * (repeat + 1) / wall[n]:.1f}/s' for n in wall)}",
            file=sys.stderr,
            flush=True,
        )

    reference = np.concatenate(parts[0])
    print(
        "\n| backend | precision | chunks/s | vs torch-fp32 | CPU s per 1,000 | vs torch-fp32 (CPU) "
        "| min cosine | mean cosine | auto accepts |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    done = len(texts) * args.repeat
    for n, (label, backend) in enumerate(runs):
        cosines = np.sum(reference * np.concatenate(parts[n]), axis=1)
        rate, cpu_per_1000 = done / wall[n], 1000 * cpu[n] / done
        accepted = "yes" if cosines.min() >= embedding_backends.MIN_COSINE else "no"
        print(
            f"| {label} | {backend.precision} | {rate:.1f} | {wall[0] / wall[n]:.2f}x | {cpu_per_1000:.0f} "
            f"| {cpu[0] / cpu[n]:.2f}x | {cosines.min():.5f} | {cosines.mean():.6f} | {accepted} |"
        )


if __name__ == "__main__":
    main()
