"""PDF text engines side by side: pages/s, failures and text found, on the same folder, in one run.

    .venv/bin/python bench/pdf_engines.py [FOLDER ...] [--engine pdfium --engine poppler --engine unstructured]

For every engine (``INGEST_PDF_ENGINE``) and every PDF under the folders (default:
``shared/data/pdfs`` and ``shared/data/financebench-dev/docs``), the product's own
``parse_file`` runs in this process, readers in child processes as in production.
Prints, per engine: files parsed and failed (with the reasons), pages, wall seconds,
pages/s, characters and elements found, and how many table rows carry a header.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_FOLDERS = [
    ROOT.parent / "shared" / "data" / "pdfs",
    ROOT.parent / "shared" / "data" / "financebench-dev" / "docs",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, default=DEFAULT_FOLDERS)
    parser.add_argument("--engine", action="append", dest="engines")
    args = parser.parse_args()
    engines = args.engines or ["pdfium", "poppler", "unstructured"]

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    import assistant.privacy  # noqa: F401  (offline switches first)

    django.setup()
    from django.conf import settings
    from harness import cpu

    from ingest.parsers import ParseError, parse_file

    files = sorted(p for folder in args.folders for p in folder.rglob("*.pdf"))
    print(f"CPU: {cpu()}; {len(files)} PDFs")
    results = {}
    for engine in engines:
        settings.INGEST_PDF_ENGINE = engine
        pages = chars = elements = rows = headed = 0
        failed: dict[str, str] = {}
        clock = time.perf_counter()
        for path in files:
            try:
                _, parsed = parse_file(path)
            except ParseError as exc:
                failed[path.name] = str(exc)[:200]
                continue
            pages += parsed.pages or 0
            chars += sum(len(e.text) for e in parsed.elements)
            elements += len(parsed.elements)
            kinds = Counter(e.kind for e in parsed.elements)
            rows += kinds["table"]
            headed += sum(1 for e in parsed.elements if e.kind == "table" and e.table_header)
        wall = time.perf_counter() - clock
        results[engine] = {
            "files": len(files) - len(failed),
            "failed": failed,
            "pages": pages,
            "wall_s": round(wall, 1),
            "pages_per_s": round(pages / wall, 1) if wall else None,
            "chars": chars,
            "elements": elements,
            "table_rows": rows,
            "rows_with_header": headed,
        }
        print(engine, json.dumps(results[engine]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
