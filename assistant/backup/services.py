"""Backup and restore: the one path ``manage.py backup`` and ``manage.py restore`` call.

A backup is the database (copied while the product runs) and the originals its
documents point to, with a manifest: the product's version, the applied migrations,
row counts and a SHA-256 per member. The FAISS and BM25 indexes are left out: they
are caches of the database, and a restore rebuilds them.

A restore checks the whole archive before it changes anything; refuses a target that
already holds data (unless forced), an archive from another database engine and one
whose schema is newer than this version's; then loads the database, migrates it to
this version, checks that the audit log is still append-only, puts the originals in
place and rebuilds the indexes.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from assistant.backup import postgresql, sqlite
from assistant.backup.archive import (
    DATABASE_MEMBERS,
    ORIGINALS,
    SECRET_KEY,
    ArchiveWriter,
    BackupError,
    Manifest,
    archive_unpack,
)
from ingest import originals as stored_originals

__all__ = [
    "BackupError",
    "BackupResult",
    "RestoreResult",
    "backup_create",
    "backup_restore",
    "database_counts",
    "target_contents",
]

# What the manifest counts (and a restore compares): name -> table.
COUNTED = {
    "users": "auth_user",
    "groups": "auth_group",
    "collections": "ingest_collection",
    "grants": "accounts_collectiongrant",
    "documents": "ingest_document",
    "chunks": "ingest_chunk",
    "conversations": "chat_conversation",
    "messages": "chat_message",
    "audit_events": "audit_auditevent",
    "api_tokens": "accounts_apitoken",
}
# A target holding rows in any of these is not empty.
_HOLDING = ("users", "collections", "documents", "conversations", "audit_events")


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Manifest
    size: int


@dataclass(frozen=True)
class RestoreResult:
    manifest: Manifest
    counts: dict[str, int | None]
    migrated: list[str] = field(default_factory=list)
    indexed: dict[str, int] = field(default_factory=dict)
    secret_key_restored: bool = False


def product_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("assistant")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(settings.BASE_DIR) / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def _tables(cursor: Any, vendor: str) -> set[str]:
    if vendor == "sqlite":
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {row[0] for row in cursor.fetchall()}


def database_counts(cursor: Any, vendor: str) -> dict[str, int | None]:
    present = _tables(cursor, vendor)
    counts: dict[str, int | None] = {}
    for name, table in COUNTED.items():
        if table not in present:
            counts[name] = None
            continue
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (a constant of this module)
        counts[name] = int(cursor.fetchone()[0])
    return counts


def _describe(cursor: Any, vendor: str) -> tuple[dict[str, int | None], list[tuple[str, str]], list[str]]:
    """Counts, applied migrations and stored originals of the database ``cursor`` reads."""
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
    migrations = [(str(app), str(name)) for app, name in cursor.fetchall()]
    cursor.execute("SELECT DISTINCT file FROM ingest_document WHERE file <> '' ORDER BY file")
    originals = [str(row[0]) for row in cursor.fetchall()]
    return database_counts(cursor, vendor), migrations, originals


def _vendor() -> str:
    vendor = connection.vendor
    if vendor not in DATABASE_MEMBERS:
        raise BackupError(f"backups support PostgreSQL and SQLite, not {vendor}")
    return vendor


def _secret_key_file() -> Path:
    return Path(settings.DATA_DIR) / "secret_key"


def _secret_key_from_file() -> bytes | None:
    """The key file's content, if it is the key this instance runs with (not one set in the environment)."""
    path = _secret_key_file()
    if path.is_file() and path.read_text().strip() == settings.SECRET_KEY:
        return path.read_bytes()
    return None


def _writable_output(output: Path | str) -> Path:
    output = Path(output).expanduser().absolute()
    if output.exists():
        raise BackupError(f"{output} already exists: choose a new name (a backup never overwrites one)")
    if not output.parent.is_dir():
        raise BackupError(f"cannot write {output}: the folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise BackupError(f"cannot write {output}: the folder {output.parent} is not writable")
    return output


def backup_create(*, output: Path | str) -> BackupResult:
    """Write one archive of the database and the originals to ``output`` (which must not exist)."""
    output = _writable_output(output)
    vendor = _vendor()
    try:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=".backup-") as work:
            database = Path(work) / "database"
            writer = ArchiveWriter(output)
            try:
                manifest = _write(writer, vendor=vendor, database=database)
            except BaseException:
                writer.abort()
                raise
    except OSError as exc:
        raise BackupError(f"cannot write {output}: {exc}") from exc
    return BackupResult(path=output, manifest=manifest, size=output.stat().st_size)


def _write(writer: ArchiveWriter, *, vendor: str, database: Path) -> Manifest:
    if vendor == "postgresql":
        with postgresql.snapshot() as (snapshot_id, cursor):
            tool = postgresql.dump(output=database, snapshot_id=snapshot_id)
            counts, migrations, originals = _describe(cursor, vendor)
    else:
        tool = sqlite.dump(output=database)
        copy = sqlite3.connect(database)
        try:
            counts, migrations, originals = _describe(copy.cursor(), vendor)
        finally:
            copy.close()
    writer.add_file(DATABASE_MEMBERS[vendor], database)
    database.unlink()
    missing = []
    for name in originals:
        # Wherever the originals are kept (the data dir, a shared folder, a bucket),
        # the archive holds their bytes: a restore needs nothing but the archive.
        try:
            with stored_originals.original_local_path(name) as path:
                if not path.is_file():
                    raise FileNotFoundError(name)
                writer.add_file(ORIGINALS + name, path)
        except FileNotFoundError:
            missing.append(name)  # deleted since the snapshot, or lost before it
    key = _secret_key_from_file()
    if key is not None:
        writer.add_bytes(SECRET_KEY, key)
    manifest = Manifest(
        version=product_version(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        vendor=vendor,
        database_tool=tool,
        migrations=migrations,
        counts=counts,
        missing_originals=missing,
    )
    writer.finish(manifest)
    return manifest


def target_contents() -> dict[str, int]:
    """What this instance already holds: rows in the tables that matter, and stored originals. Empty: {}."""
    with connection.cursor() as cursor:
        counts = database_counts(cursor, connection.vendor)
    held = {name: n for name in _HOLDING if (n := counts.get(name))}
    files = len(stored_originals.originals_stored())
    if files:
        held["original files"] = files
    return held


def _check_compatible(manifest: Manifest, vendor: str) -> None:
    if manifest.vendor != vendor:
        raise BackupError(
            f"the archive holds a {manifest.vendor} database and this instance runs on {vendor}: "
            f"restore it on an instance configured for {manifest.vendor} (DATABASE_URL)"
        )
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = set(loader.graph.nodes) | set(loader.replacements)
    unknown = [
        f"{app}.{name}" for app, name in manifest.migrations if app in loader.migrated_apps and (app, name) not in known
    ]
    if unknown:
        raise BackupError(
            f"the archive was written by a newer version ({manifest.version}, on {manifest.created_at}): its database "
            f"has migrations this version does not know ({', '.join(unknown[:5])}). "
            "Install that version or a later one, then restore."
        )


def backup_restore(*, archive: Path | str, force: bool = False) -> RestoreResult:
    """Restore ``archive`` into this instance; see the module's docstring for the checks and the order."""
    vendor = _vendor()
    parent = stored_originals.staging_parent()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=".restore-"))
    try:
        manifest = archive_unpack(Path(archive).expanduser().absolute(), staging)
        _check_compatible(manifest, vendor)
        copy = staging.joinpath(*DATABASE_MEMBERS[vendor].split("/"))
        if vendor == "postgresql":
            postgresql.check_dump(dump_file=copy, written_by=manifest.database_tool)
        else:
            sqlite.check_copy(copy)
        held = target_contents()
        if held and not force:
            found = ", ".join(f"{n} {name}" for name, n in held.items())
            raise BackupError(
                f"this instance already holds data ({found}); restore replaces everything: "
                "run it with --force to do so, or point it at an empty database and data folder"
            )
        # The archive is whole and fits: from here on the target changes.
        if vendor == "postgresql":
            postgresql.restore(dump_file=copy, written_by=manifest.database_tool)
        else:
            sqlite.restore(copy=copy)
        with connection.cursor() as cursor:
            counts = database_counts(cursor, vendor)
        if any(counts[name] != manifest.counts.get(name) for name in counts if manifest.counts.get(name) is not None):
            raise BackupError(f"the restored database does not match the manifest: {counts} != {manifest.counts}")
        migrated = _migrate()
        _check_audit_guard()
        stored_originals.originals_replace(staging / ORIGINALS.rstrip("/"))
        secret_restored = _restore_secret_key(staging / SECRET_KEY)
        indexed = _rebuild_indexes()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreResult(
        manifest=manifest, counts=counts, migrated=migrated, indexed=indexed, secret_key_restored=secret_restored
    )


def _migrate() -> list[str]:
    """Bring a restored older schema to this version's; returns the migrations applied."""
    from django.core.management import call_command
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    call_command("migrate", interactive=False, verbosity=0, stdout=io.StringIO())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def _check_audit_guard() -> None:
    from assistant.audit import triggers

    if not triggers.installed(connection):
        raise BackupError("the restored audit log has lost its append-only triggers; do not use this database")


def _restore_secret_key(source: Path) -> bool:
    """Put the archived key file back, unless this instance takes its key from the environment."""
    path = _secret_key_file()
    if not source.is_file() or (path.is_file() and path.read_text().strip() != settings.SECRET_KEY):
        return False
    shutil.copyfile(source, path)
    path.chmod(0o600)
    return True


def _rebuild_indexes() -> dict[str, int]:
    """Drop every index file and derive each collection's FAISS and BM25 indexes from the database."""
    from ingest.models import Collection
    from ingest.vector_store import vector_store

    index_dir = Path(settings.INDEX_DIR)
    index_dir.mkdir(parents=True, exist_ok=True)
    for stale in index_dir.glob("collection-*"):
        if stale.is_file() and stale.suffix != ".lock":
            stale.unlink()  # an index of the replaced database, maybe of a collection gone now
    return {c.name: vector_store().rebuild(collection_id=c.pk) for c in Collection.objects.order_by("pk")}
