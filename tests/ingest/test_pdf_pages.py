"""PDF text read side by side in child processes: every page once, progress, clear failures, no orphans."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pikepdf
import pytest

from ingest.parsers import ParseError, parse_file
from ingest.parsers.base import progress_reported_to, report_progress
from ingest.parsers.pdf_pages import page_ranges, read_page_texts
from tests.conftest import SHARED_DATA

FILING = SHARED_DATA / "financebench-dev" / "docs" / "3M_2018_10K.pdf"


def _children_of_this_process() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if parent == str(os.getpid()) and b"pdf_pages_child" in cmdline:
            found.append(int(entry.name))
    return found


def test_ranges_cover_every_page_once() -> None:
    for pages in (1, 7, 160, 2000):
        ranges = page_ranges(pages, workers=2, per_process=250)
        covered = [n for first, last in ranges for n in range(first, last + 1)]
        assert covered == list(range(1, pages + 1))
        assert all(last - first < 250 for first, last in ranges)
    assert len(page_ranges(160, workers=2, per_process=250)) == 2  # both cores busy on a mid-size file


@pytest.mark.skipif(not FILING.exists(), reason="shared data missing")
def test_pages_read_in_parallel_match_a_single_reader(tmp_path: Path) -> None:
    with pikepdf.open(FILING) as pdf:
        count = len(pdf.pages)
    seen: list[tuple[int, int]] = []
    parallel = read_page_texts(
        FILING, count, workers=3, per_process=40, progress=lambda d, t: seen.append((d, t))
    ).texts
    single = read_page_texts(FILING, count, workers=1, per_process=count).texts
    assert parallel == single
    assert sorted(parallel) == list(range(1, count + 1))
    assert "Purchases of property, plant and equipment (PP&E)" in parallel[60]
    # Progress arrives page by page, up to the whole file.
    assert seen[-1] == (count, count)
    assert len(seen) > 4


def test_a_damaged_file_fails_with_the_pages_and_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"not a pdf at all" * 100)
    with pytest.raises(ParseError, match=r"pages 1-3: .+"):
        read_page_texts(broken, 3, workers=1)


@pytest.mark.skipif(not FILING.exists(), reason="shared data missing")
def test_a_reader_over_its_memory_cap_fails_the_file_not_the_worker() -> None:
    with pytest.raises(ParseError, match=r"could not be read \(pages 1-5: "):
        read_page_texts(FILING, 5, workers=1, memory_bytes=8 * 1024**2)


@pytest.mark.skipif(not FILING.exists(), reason="shared data missing")
def test_an_interrupted_read_leaves_no_reader_behind() -> None:
    class Interrupted(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Interrupted  # what Celery's soft time limit does: an exception wherever the code is

    with pytest.raises(Interrupted):
        read_page_texts(FILING, 160, workers=2, per_process=20, progress=stop)
    assert _children_of_this_process() == []


@pytest.mark.skipif(not FILING.exists(), reason="shared data missing")
@pytest.mark.parametrize("engine", ["pdfium", "poppler"])
def test_engines_give_pages_headings_and_rows(settings, engine: str) -> None:
    if engine == "poppler" and not shutil.which("pdftotext"):
        pytest.skip("poppler-utils is not installed")
    settings.INGEST_PDF_ENGINE = engine
    _, parsed = parse_file(FILING)
    on_60 = [e for e in parsed.elements if e.page == 60]
    assert parsed.pages == 160
    # (poppler splits "Flows" in two on this page: a kerning artefact of the file)
    assert any(e.kind == "title" and "Consolidated Statement of Cash Flow" in e.text for e in on_60)
    assert not [e for e in parsed.elements if e.text == "Table of Contents"]  # the running head
    row = next(e for e in on_60 if e.text.startswith("Purchases of property, plant and equipment"))
    assert row.kind == "table"
    assert row.text.endswith("(1,577) (1,373) (1,420)")
    assert "2018" in row.table_header


@pytest.mark.skipif(not FILING.exists(), reason="shared data missing")
def test_parsing_reports_pages_read_to_whoever_parses() -> None:
    seen: list[tuple[int, int]] = []
    with progress_reported_to(lambda done, total: seen.append((done, total))):
        parse_file(FILING)
    assert seen[-1] == (160, 160)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    # Outside the block nobody listens.
    report_progress(1, 2)
    assert seen[-1] == (160, 160)
