"""Choosing what an operator's command acts on: collections, and files on disk."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError
from django.db.models import QuerySet

from ingest.models import Collection


def selected_collections(name: str | None) -> QuerySet[Collection]:
    """Every collection, or the one named; an unknown name is a clear error."""
    collections = Collection.objects.all()
    if name:
        collections = collections.filter(name=name)
        if not collections.exists():
            raise CommandError(f"No collection named '{name}'.")
    return collections


def files_in_folder(folder: Path) -> list[Path]:
    """Every file under ``folder``, in name order, leaving out hidden files and folders inside it.

    Only the parts of a path below ``folder`` are looked at: the folder itself may
    well live under a hidden directory (``~/.local/share``, a ``.snapshots`` mount)
    or be named through ``..``, and that must not hide everything in it.
    """
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
