"""``manage.py vectors setup|migrate|drop|status``: the engine that searches passages (``VECTOR_STORE``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ingest.vector_store import ENGINES


class Command(BaseCommand):
    help = (
        "Set up the pgvector table (setup), bring FAISS or pgvector in step with the database without "
        "re-embedding, before and again after switching VECTOR_STORE (migrate --to faiss|pgvector), remove "
        "the engine no longer in use (drop --engine), or compare each engine with the database (status)."
    )

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        setup = actions.add_parser("setup", help="Create the pgvector extension, table and indexes if missing.")
        setup.add_argument("--recreate", action="store_true", help="Drop the table first (for another model's width).")
        migrate = actions.add_parser(
            "migrate",
            help="Copy to an engine what it lacks and remove what the database no longer has; "
            "the engine in use keeps serving. Run it again after the switch to catch up.",
        )
        migrate.add_argument("--to", required=True, choices=ENGINES)
        drop = actions.add_parser("drop", help="Remove an engine's copy after the switch (never the one in use).")
        drop.add_argument("--engine", required=True, choices=ENGINES)
        actions.add_parser("status", help="The configured engine and how each one compares with the database.")

    def handle(self, *args: Any, **options: Any) -> None:
        from ingest import pgvector_store
        from ingest.vector_migration import EngineInUse

        action = options["action"]
        try:
            if action == "setup":
                if options["recreate"]:
                    pgvector_store.pgvector_teardown()
                width = pgvector_store.pgvector_setup()
                self.stdout.write(f"{pgvector_store.TABLE}: ready for {width}-dimension vectors.")
            elif action == "migrate":
                self._migrate(to=options["to"])
            elif action == "drop":
                self._drop(engine=options["engine"])
            else:
                self._status()
        except (pgvector_store.PgvectorUnavailable, EngineInUse) as exc:
            raise CommandError(str(exc)) from exc

    def _migrate(self, *, to: str) -> None:
        from ingest.vector_migration import vectors_migrate

        moved = vectors_migrate(to=to)
        for name, change in moved.items():
            changed = f"{change.added} added, {change.removed} removed"
            self.stdout.write(f"{name}: {to} holds {change.size} passages ({changed})")
        if to != settings.VECTOR_STORE:
            self.stdout.write(
                f"The instance still searches {settings.VECTOR_STORE}. Now set VECTOR_STORE={to}, restart the web "
                f"and worker processes, and run `manage.py vectors migrate --to {to}` again: it copies what was "
                f"written to {settings.VECTOR_STORE} alone meanwhile. Then `manage.py vectors drop --engine "
                f"{settings.VECTOR_STORE}` removes the old copy."
            )

    def _drop(self, *, engine: str) -> None:
        from ingest.vector_migration import vectors_drop

        vectors_drop(engine=engine)
        self.stdout.write(f"{engine}: every collection's copy removed.")

    def _status(self) -> None:
        from ingest.models import Collection
        from ingest.vector_migration import vectors_agreement

        self.stdout.write(f"VECTOR_STORE={settings.VECTOR_STORE}")
        differs = dict.fromkeys(ENGINES, False)
        holds = dict.fromkeys(ENGINES, 0)
        for collection in Collection.objects.order_by("pk"):
            parts = []
            for agreement in vectors_agreement(collection_id=collection.pk):
                differs[agreement.engine] |= not agreement.in_step
                holds[agreement.engine] += agreement.held + agreement.extra
                if agreement.problem:
                    parts.append(f"{agreement.engine} {agreement.problem}")
                elif agreement.in_step:
                    parts.append(f"{agreement.engine} {agreement.held} (in step)")
                else:
                    parts.append(
                        f"{agreement.engine} {agreement.held} ({agreement.missing} missing, {agreement.extra} extra)"
                    )
            self.stdout.write(f"{collection.name}: {', '.join(parts)}")
        for engine in ENGINES:
            if engine == settings.VECTOR_STORE:
                name = f"{engine} (in use)"
            elif not holds[engine]:
                self.stdout.write(f"{engine} (idle) holds nothing.")
                continue
            else:
                name = f"{engine} (idle)"
            if differs[engine]:
                self.stdout.write(
                    f"{name} differs from the database: `manage.py vectors migrate --to {engine}` brings it in step."
                )
            else:
                self.stdout.write(f"{name} agrees with the database.")
