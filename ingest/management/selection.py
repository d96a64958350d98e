"""Choosing the collections an operator's command acts on."""

from __future__ import annotations

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
