"""``manage.py restore PATH [--force]``: put a backup archive back, migrate it and rebuild the indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from assistant.backup import services


class Command(BaseCommand):
    help = (
        "Restore an archive written by `manage.py backup` into this instance (stop the web server and workers "
        "first). Refuses an instance that already holds data unless --force; migrates an archive from an older "
        "version and rebuilds the search indexes."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("archive", type=Path)
        parser.add_argument("--force", action="store_true", help="Replace the data this instance already holds.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = services.backup_restore(archive=options["archive"], force=options["force"])
        except services.BackupError as exc:
            raise CommandError(f"Restore failed: {exc}") from exc
        manifest = result.manifest
        counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in result.counts.items() if n is not None)
        self.stdout.write(f"Restored the backup of {manifest.created_at} (version {manifest.version}): {counts}.")
        if result.migrated:
            self.stdout.write(f"Migrated to this version: {', '.join(result.migrated)}.")
        for name, size in result.indexed.items():
            self.stdout.write(f"Rebuilt the indexes of {name}: {size} passages.")
        if result.secret_key_restored:
            self.stdout.write("Restored the instance's secret key.")
