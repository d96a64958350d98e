"""``manage.py vectors setup|migrate|status``: the engine that searches passages (``VECTOR_STORE``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingest.vector_store import ENGINES


class Command(BaseCommand):
    help = (
        "Set up the pgvector table (setup), move an instance between FAISS and pgvector without "
        "re-embedding (migrate --to faiss|pgvector), or show what each engine holds (status)."
    )

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        setup = actions.add_parser("setup", help="Create the pgvector extension, table and indexes if missing.")
        setup.add_argument("--recreate", action="store_true", help="Drop the table first (for another model's width).")
        migrate = actions.add_parser("migrate", help="Write every collection's vectors to another engine.")
        migrate.add_argument("--to", required=True, choices=ENGINES)
        migrate.add_argument("--keep-source", action="store_true", help="Leave the other engine's copy in place.")
        actions.add_parser("status", help="The configured engine and what each one holds.")

    def handle(self, *args: Any, **options: Any) -> None:
        from ingest import pgvector_store

        action = options["action"]
        try:
            if action == "setup":
                if options["recreate"]:
                    pgvector_store.pgvector_teardown()
                width = pgvector_store.pgvector_setup()
                self.stdout.write(f"{pgvector_store.TABLE}: ready for {width}-dimension vectors.")
            elif action == "migrate":
                self._migrate(to=options["to"], keep_source=options["keep_source"])
            else:
                self._status()
        except pgvector_store.PgvectorUnavailable as exc:
            raise CommandError(str(exc)) from exc

    def _migrate(self, *, to: str, keep_source: bool) -> None:
        from ingest.vector_store import vectors_migrate

        moved = vectors_migrate(to=to, keep_source=keep_source)
        for name, size in moved.items():
            self.stdout.write(f"{name}: {size} passages written to {to}")
        if to != settings.VECTOR_STORE:
            self.stdout.write(f"Now set VECTOR_STORE={to} and restart the web and worker processes.")

    def _status(self) -> None:
        from ingest import index, pgvector_store
        from ingest.models import Collection

        self.stdout.write(f"VECTOR_STORE={settings.VECTOR_STORE}")
        table = pgvector_store.table_dimensions() if pgvector_store.pgvector_version() else None
        for collection in Collection.objects.order_by("pk"):
            line = f"{collection.name}: faiss {index.index_size(collection.pk)}"
            if table is not None:
                line += f", pgvector {pgvector_store.PgvectorStore().size(collection_id=collection.pk)}"
            self.stdout.write(line)
