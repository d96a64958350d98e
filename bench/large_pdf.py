"""A very large PDF parsed in bounded memory: peak RSS of the whole process tree, pages/s.

    .venv/bin/python bench/large_pdf.py [--pages 2000] [--engine pdfium] [--workers 0]

Builds one PDF of ``--pages`` pages from the real reports of ``shared/data/pdfs``
(concatenated with pikepdf, repeated as needed), then parses it with the product's
``parse_file`` in a child process, sampling the RSS of that process and of every
reader it starts (``measure.TreeMemory``). Prints pages/s, the number of elements,
and the peak memory: the target is under 1.5 GiB for 2,000 pages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pikepdf
from measure import REPO, TreeMemory

SOURCES = REPO.parent / "shared" / "data" / "pdfs"

CHILD = """
import json, os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
import assistant.privacy
import django
django.setup()
from pathlib import Path
from ingest.parsers import parse_file
clock = time.perf_counter()
kind, parsed = parse_file(Path(sys.argv[1]))
print(json.dumps({"pages": parsed.pages, "elements": len(parsed.elements),
                  "chars": sum(len(e.text) for e in parsed.elements), "parse_s": time.perf_counter() - clock}))
"""


def build(dest: Path, pages: int) -> int:
    sources = sorted(SOURCES.rglob("*.pdf"))
    with pikepdf.new() as out:
        while len(out.pages) < pages:
            for source in sources:
                with pikepdf.open(source) as pdf:
                    for page in pdf.pages:
                        if len(out.pages) >= pages:
                            break
                        out.pages.append(page)
                if len(out.pages) >= pages:
                    break
        out.save(dest)
        return len(out.pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--engine", default="pdfium")
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-large-pdf-") as home:
        path = Path(home) / "large.pdf"
        count = build(path, args.pages)
        print(f"built {path.name}: {count} pages, {path.stat().st_size / 1e6:.0f} MB")
        env = {
            **os.environ,
            "ASSISTANT_DATA_DIR": home,
            "INGEST_PDF_ENGINE": args.engine,
            "INGEST_PDF_WORKERS": str(args.workers),
        }
        env.pop("DATABASE_URL", None)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        with TreeMemory(process.pid, every=0.05) as memory:
            out, _ = process.communicate()
        wall = time.perf_counter() - started
        if process.returncode != 0:
            sys.exit(f"parse failed ({process.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
        result.update(
            wall_s=round(wall, 1),
            pages_per_s=round(count / result["parse_s"], 1),
            peak_tree_rss_mb=round(memory.peak_mb, 0),
            engine=args.engine,
            cores=os.cpu_count(),
        )
        result["parse_s"] = round(result["parse_s"], 1)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
