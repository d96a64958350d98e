"""``manage.py ingest`` on folders, through call_command as an operator runs it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from ingest.models import Collection

pytestmark = pytest.mark.django_db


def ingest(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("ingest", "--inline", "--json", *args, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_folder_under_hidden_directories_is_ingested_and_only_hidden_entries_inside_it_skipped(
    tmp_path: Path,
) -> None:
    # Where documents really live: ~/.local/share/..., a .snapshots mount.
    folder = tmp_path / ".local" / "share" / ".snapshots" / "policies"
    (folder / "travel").mkdir(parents=True)
    (folder / "travel" / "meals.md").write_text("# Meals\n\nThe meal allowance abroad is 40 euros a day.")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "draft.md").write_text("# Draft\n\nNot for the collection.")
    (folder / ".DS_Store").write_bytes(b"\0\1\2")
    rows = ingest("--collection", "Hidden parents", str(folder))
    assert [(r["name"], r["status"]) for r in rows] == [("meals.md", "ready")]
    names = Collection.objects.get(name="Hidden parents").documents.values_list("name", flat=True)
    assert list(names) == ["meals.md"]


def test_a_folder_with_no_file_to_ingest_is_an_error_that_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    (folder / ".git").mkdir(parents=True)
    (folder / ".git" / "config").write_text("[core]")
    with pytest.raises(CommandError, match=rf"No file to ingest in {folder} \(hidden files and folders"):
        ingest("--collection", "Nothing", str(folder))


def test_a_named_hidden_file_is_ingested(tmp_path: Path) -> None:
    """Only entries inside a named folder are skipped; a file named on the command line is wanted."""
    note = tmp_path / ".notes.md"
    note.write_text("# Notes\n\nThe office closes at six.")
    rows = ingest("--collection", "Named", str(note))
    assert [(r["name"], r["status"]) for r in rows] == [(".notes.md", "ready")]
