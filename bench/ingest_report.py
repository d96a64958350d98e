"""The ingestion benchmark's report: one Markdown table per dataset (``bench/ingest.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetResult:
    name: str
    files: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _peak(row: dict[str, Any]) -> float:
    peak = row["peak_rss_mb"]
    return float(peak["worker_tree"] + peak["ingest_command"]) if isinstance(peak, dict) else float(peak)


def render(results: list[DatasetResult]) -> str:
    lines = []
    for result in results:
        ours = [r for r in result.rows if r["system"].startswith("ours")]
        pages = ours[0]["pages"] if ours else None
        baseline = next((r for r in result.rows if r["system"] == "llamaindex"), None)
        lines += [
            f"### {result.name} ({result.files} files, {pages if pages is not None else '?'} pages)",
            "",
            "| system | wall s | vs LlamaIndex | chunks | chunks/s | pages/s | peak RSS MB "
            "| parse s | chunk s | embed s | index s | load avg |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for row in result.rows:
            stages = row.get("stages") or {}
            wall = float(row["wall_s"])
            ratio = f"{wall / baseline['wall_s']:.2f}x" if baseline else "-"
            lines.append(
                "| "
                + " | ".join(
                    [
                        row["system"],
                        _fmt(wall),
                        ratio,
                        str(row["chunks"]),
                        _fmt(row["chunks"] / wall if wall else None),
                        _fmt(pages / wall if pages and not row["system"].startswith("floor") else None),
                        _fmt(_peak(row), 0),
                        _fmt(stages.get("parse")),
                        _fmt(stages.get("chunk")),
                        _fmt(stages.get("embed", row.get("embed_s"))),
                        _fmt(stages.get("index")),
                        "{:.1f}->{:.1f}".format(*row.get("load", (0, 0))),
                    ]
                )
                + " |"
            )
        for row in ours:
            lines.append(
                f"\n`{row['system']}` (EMBEDDING_PRECISION={row['setting']}, code {row['code']}): "
                f"migrate {row['migrate_s']:.1f} s, "
                f"`ingest --wait` {row['ingest_command_s']:.1f} s, {row['tasks']['count']} tasks summing "
                f"{row['tasks']['sum_s']:.1f} s in the worker; ready {row['ready']}/{row['documents']}"
                + (f"; failed: {', '.join(sorted(row['failed']))}" if row["failed"] else "")
            )
        for row in result.rows:
            if row["system"].startswith("llamaindex"):
                stages = ", ".join(f"{k} {v:.1f} s" for k, v in row["stages"].items())
                lines.append(f"\n`{row['system']}`: {row['documents']} documents read; {stages}")
        for system, error in result.errors.items():
            lines.append(f"\n**{system} failed**: {error.splitlines()[0] if error else ''}")
        if result.quality:
            lines.append("\nSciFact test nDCG@10 from ours' stored vectors (dense, exact inner product):")
            lines += [f"- {system}: {score:.4f}" for system, score in result.quality.items()]
        lines.append("")
    return "\n".join(lines)
