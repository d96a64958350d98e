"""``manage.py reindex [--collection NAME]``: re-embed with the configured model and swap."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from ingest import indexes
from ingest.management.selection import selected_collections


class Command(BaseCommand):
    help = (
        "Re-embed every passage of one collection (or all) with the configured embedding model, "
        "building a new index beside the old one, which keeps serving until the swap."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--collection")

    def handle(self, *args: Any, **options: Any) -> None:
        for collection in selected_collections(options["collection"]):
            started = time.monotonic()
            size = indexes.collection_reindex(collection_id=collection.pk)
            self.stdout.write(f"{collection.name}: {size} vectors re-embedded in {time.monotonic() - started:.1f}s")
