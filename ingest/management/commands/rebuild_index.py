"""``manage.py rebuild_index [--collection NAME]``: rebuild FAISS and BM25 from the database alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ingest.management.selection import selected_collections
from ingest.vector_store import vector_store


class Command(BaseCommand):
    help = "Rebuild the vector and lexical indexes of one collection (or all) from the chunks stored in the database."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--collection")

    def handle(self, *args: Any, **options: Any) -> None:
        for collection in selected_collections(options["collection"]):
            size = vector_store().rebuild(collection_id=collection.pk)
            self.stdout.write(f"{collection.name}: {size} vectors")
