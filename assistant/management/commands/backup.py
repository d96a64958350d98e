"""``manage.py backup --output PATH``: one archive of the database and the uploaded originals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from assistant.backup import services


class Command(BaseCommand):
    help = (
        "Write one archive holding the database and the uploaded originals, with a manifest of versions, "
        "counts and checksums. Safe while the product runs. Indexes are not included: restore rebuilds them."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", required=True, type=Path, help="The archive to write (must not exist).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = services.backup_create(output=options["output"])
        except services.BackupError as exc:
            raise CommandError(f"Backup failed: {exc}") from exc
        manifest = result.manifest
        counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in manifest.counts.items() if n is not None)
        self.stdout.write(f"Wrote {result.path} ({result.size:,} bytes): {manifest.vendor} database, {counts}.")
        if manifest.missing_originals:
            self.stderr.write(
                f"{len(manifest.missing_originals)} original(s) named by documents were not on disk: "
                + ", ".join(manifest.missing_originals[:10])
            )
