"""What ingesting a folder embeds: chunks and word pieces, against the parsed text's own.

    .venv/bin/python bench/embedded_pieces.py [--data DIR]

Parses every file under ``DIR`` (default ``shared/data/pdfs``) and chunks it exactly as
the pipeline does (``parse_file``, the document's context line, ``chunk_elements`` at
the model's window, the model's own tokenizer), without embedding anything. Prints the
word pieces of the parsed text, of the chunks' bodies and of what would be embedded
(body, context line and heading), and the chunks' sizes. This is the floor of any
"every word embedded" pipeline with this model: no backend can embed fewer pieces.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "pdfs")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from ingest import context
    from ingest.chunking import chunk_elements
    from ingest.embedding import count_tokens
    from ingest.parsers import parse_file
    from ingest.parsers.base import ParseError
    from ingest.pipeline import chunk_max_tokens

    files = sorted(p for p in args.data.rglob("*") if p.is_file())
    parsed_pieces = body_pieces = 0
    sizes: list[int] = []
    pages = failed = 0
    clock = time.monotonic()
    for path in files:
        try:
            _, parsed = parse_file(path, name=path.name)
        except ParseError as exc:
            failed += 1
            print(f"failed: {path.name}: {exc}")
            continue
        elements = parsed.elements
        parsed_pieces += sum(count_tokens(e.text) for e in elements if e.text.strip())
        described = context.described(elements, name=path.name)
        drafts = chunk_elements(
            elements, max_tokens=chunk_max_tokens(), count_tokens=count_tokens, context=described.context
        )
        pages += parsed.pages or 0
        for draft in drafts:
            sizes.append(count_tokens(draft.embedding_text))
            body_pieces += count_tokens(draft.text)
    embedded = sum(sizes)
    print(f"files {len(files)} ({failed} failed), pages {pages}, chunks {len(sizes)}, {time.monotonic() - clock:.1f} s")
    print(f"word pieces: parsed text {parsed_pieces:,}, chunk bodies {body_pieces:,}, embedded {embedded:,}")
    if sizes and parsed_pieces:
        print(
            f"embedded / parsed {embedded / parsed_pieces:.2f}; chunk pieces mean {statistics.mean(sizes):.0f}, "
            f"median {statistics.median(sizes):.0f}, under 64: {sum(s < 64 for s in sizes)}"
        )


if __name__ == "__main__":
    main()
