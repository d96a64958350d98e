"""A folder connector's incremental sync: the second run against the first, on a generated share.

    .venv/bin/python bench/connector_sync.py                  # 10,000 files, 1% changed
    .venv/bin/python bench/connector_sync.py --files 2000 --changed 0.01

Generates a folder of small text files (100 subfolders), adds a folder connector
on the embedded defaults (SQLite in a fresh ``ASSISTANT_DATA_DIR``), and times:

1. the first sync: every file listed, read, hashed and stored as a document;
2. a second sync after ``--changed`` of the files were rewritten (half edited, a
   quarter deleted, a quarter new), which must read only those;
3. a third sync with nothing changed.

It measures the connector's own work (listing, comparing, reading, storing the
documents and queueing them); the documents' parsing and embedding are the
pipeline's, measured by ``bench/ingest.py``, and are the same per document either way.
The numbers depend on the machine (its CPU is printed) and its file system cache.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.connectors.sync import SyncReport

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import cpu, django_setup  # noqa: E402


def generate(root: Path, files: int) -> list[Path]:
    rng = random.Random(7)  # noqa: S311 (generated text, not a secret)
    paths = []
    for n in range(files):
        path = root / f"dept-{n % 100:02d}" / f"note-{n:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        words = " ".join(rng.choice(["budget", "policy", "report", "meeting", "travel", "audit"]) for _ in range(150))
        path.write_text(f"Note {n}\n\n{words}\n")
        paths.append(path)
    return paths


def change(root: Path, paths: list[Path], fraction: float) -> int:
    rng = random.Random(11)  # noqa: S311 (which files change, not a secret)
    chosen = rng.sample(paths, max(4, int(len(paths) * fraction)))
    quarter = len(chosen) // 4
    for path in chosen[: 2 * quarter]:
        path.write_text(path.read_text() + "\nEdited for the benchmark.\n")
        os.utime(path, (time.time() + 60, time.time() + 60))
    for path in chosen[2 * quarter : 3 * quarter]:
        path.unlink()
    for n in range(len(chosen) - 3 * quarter):
        (root / "new").mkdir(exist_ok=True)
        (root / "new" / f"added-{n}.txt").write_text(f"A new note {n} about the audit.\n")
    return len(chosen)


def timed_sync(connector: Any) -> tuple[float, SyncReport]:
    from assistant.connectors import sync

    clock = time.perf_counter()
    report = sync.connector_sync(connector=connector, enqueue=False)
    return time.perf_counter() - clock, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as share_dir:
        django_setup(data_dir, sqlite=True)
        from assistant.connectors import services
        from ingest.services import collection_create

        share = Path(share_dir)
        paths = generate(share, args.files)
        collection = collection_create(name="Bench share")
        connector = services.connector_add(
            collection=collection, kind="folder", name="bench", settings={"path": str(share)}
        )
        first_s, first = timed_sync(connector)
        changed = change(share, paths, args.changed)
        second_s, second = timed_sync(connector)
        third_s, third = timed_sync(connector)
        print(f"CPU: {cpu()}, load {os.getloadavg()[0]:.2f}; SQLite")
        print(f"{args.files} files, {changed} changed between runs ({args.changed:.1%})")
        for label, seconds, report in (("first", first_s, first), ("second", second_s, second),
                                       ("unchanged", third_s, third)):  # fmt: skip
            counts = {k: v for k, v in report.counts.items() if v}
            print(
                f"{label:>9} sync: {seconds:8.2f} s  read {report.bytes_read / 1e6:8.2f} MB "
                f"({report.fetched} files)  {counts}"
            )
        print(
            f"second / first: time {second_s / first_s:.1%}, bytes read "
            f"{second.bytes_read / max(1, first.bytes_read):.1%}"
        )


if __name__ == "__main__":
    main()
