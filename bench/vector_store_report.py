"""Markdown tables from ``bench/vector_store.py``'s JSON lines (also for a run cut short).

.venv/bin/python bench/vector_store_report.py /tmp/vector-store.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FILES_PER_BATCH = 64


def _f(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _runs(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows of each size's run, in order (a run starts at its ``setup`` row)."""
    runs: list[list[dict[str, Any]]] = []
    for row in rows:
        if row["kind"] == "setup" or not runs:
            runs.append([])
        runs[-1].append(row)
    return runs


def _one(run: list[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any] | None:
    for row in run:
        if row["kind"] == kind and all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def _loads(run: list[dict[str, Any]], engine: str) -> tuple[float, str]:
    """The time to fill the collection from empty (the sum of the steps) and how pgvector's went."""
    steps = [r for r in run if r["kind"] == "load" and r["engine"] == engine]
    total = sum(r["load_s"] for r in steps)
    if engine == "faiss":
        return steps[-1]["load_s"] if steps else 0.0, "rebuild at the size"
    index = sum(r.get("index_s", 0.0) for r in steps)
    how = f"of which index builds {index:,.0f} s" if index else "indexes maintained"
    return total, how


def report(rows: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for run in _runs(rows):
        setup, end = run[0], _one(run, "end")
        size = setup["size"]
        lines += [
            f"### {size:,} passages",
            "",
            f"CPU: {setup['cpu']}. Load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in setup['load_avg'])}"
            + (f", at end {'/'.join(f'{x:.2f}' for x in end['load_avg'])}" if end else ", run cut short")
            + f"; {setup['started']}-{end['ended'] if end else '?'} UTC. "
            f"PostgreSQL shared_buffers {setup['shared_buffers']}; pgvector load: {setup['pg_load']}.",
            "",
            "| engine | ef_search | p50 ms | p95 ms | Recall@10 | p50 ms, hidden | p95 ms, hidden "
            "| Recall@10, hidden | web process MB (store) | load s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for engine in ("faiss", "pgvector"):
            memory = _one(run, "memory", engine=engine)
            load_s, how = _loads(run, engine)
            for search in (r for r in run if r["kind"] == "search" and r["engine"] == engine):
                lines.append(
                    f"| {engine} | {search['ef_search'] or ''} "
                    f"| {_f(search['open_p50'], 2)} | {_f(search['open_p95'], 2)} "
                    f"| {search['open_recall']:.3f} | {_f(search['hidden_p50'], 2)} | {_f(search['hidden_p95'], 2)} "
                    f"| {search['hidden_recall']:.3f} "
                    f"| {_f(memory['rss_mb'], 0) + ' (' + _f(memory['store_mb'], 0) + ')' if memory else ''} "
                    f"| {_f(load_s, 0) + ' (' + how + ')' if how else ''} |"
                )
                memory, how = None, ""
        ceiling = _one(run, "halfvec_exact")
        if ceiling:
            lines += ["", f"pgvector's half-precision vectors searched exactly: Recall@10 {ceiling['recall']:.3f}."]
        lines += [
            "",
            f"One {FILES_PER_BATCH}-file batch written at each fill (chunk rows, then the store's upsert), s:",
            "",
            "| engine | passages in the store | chunk rows s | store write s | load of the step s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for batch in (r for r in run if r["kind"] == "batch"):
            step = _one(run, "load", engine=batch["engine"], stage=batch["stage"])
            lines.append(
                f"| {batch['engine']} | {batch['stage']:,} | {batch['rows_s']:.2f} | {batch['store_s']:.2f} "
                f"| {_f(step['load_s'] if step else None, 0)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1])
    print(report([json.loads(line) for line in path.read_text().splitlines() if line.strip()]))


if __name__ == "__main__":
    main()
