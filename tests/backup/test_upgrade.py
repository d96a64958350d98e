"""Upgrades: the previous release's database, filled by that release's own code, migrates to this one.

``tests/fixtures/release-843ad9a`` was written by ``bench/release_fixture.py`` from
commit 843ad9a (the release before the catalog, preferences and document events
migrations): a SQLite file and a plain-SQL pg_dump of the same data, with the
originals each points to. Refresh it for each release (docs/backups.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from assistant.accounts import services as accounts
from assistant.accounts.models import ApiToken
from assistant.audit.models import AuditEvent
from assistant.backup import postgresql, services, sqlite
from assistant.chat.models import Message
from ingest.models import Collection, Document
from tests.backup.support import assert_append_only, search, wipe_database

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "release-843ad9a"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def _load_previous_release(settings) -> None:
    """Replace the test database with the previous release's, and its originals."""
    if connection.vendor == "postgresql":
        psql, _ = postgresql.client("psql", at_least=postgresql.server_major())
        connections.close_all()
        command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
        command += ["-c", "DROP SCHEMA public CASCADE; CREATE SCHEMA public", "-f", str(FIXTURE / "postgresql.sql")]
        subprocess.run(command, env=postgresql.environment(), check=True, capture_output=True)
    else:
        sqlite.restore(copy=FIXTURE / "db.sqlite3")
    shutil.copytree(FIXTURE / f"{connection.vendor}-files", settings.MEDIA_ROOT)


def _pending() -> list[str]:
    executor = MigrationExecutor(connection)
    return [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]


def _check_the_product_works() -> None:
    with connection.cursor() as cursor:
        counts = services.database_counts(cursor, connection.vendor)
    assert {name: counts[name] for name in EXPECTED["counts"]} == EXPECTED["counts"]
    audit = AuditEvent.objects.order_by("pk").values_list("pk", "action", "actor_username")
    assert [list(row) for row in audit[: len(EXPECTED["audit"])]] == EXPECTED["audit"]
    assert Message.objects.filter(role="assistant").exclude(citations=[]).exists()
    policies = Collection.objects.get(name=EXPECTED["collection"])
    insider, outsider = User.objects.get(username=EXPECTED["insider"]), User.objects.get(username=EXPECTED["outsider"])
    assert insider.check_password(EXPECTED["password"])
    restricted, visible = EXPECTED["restricted"], EXPECTED["visible"]
    assert restricted["text"] in search(user=insider, collection=policies, query=restricted["query"])
    assert restricted["text"] not in search(user=outsider, collection=policies, query=restricted["query"])
    assert visible["text"] in search(user=outsider, collection=policies, query=visible["query"])
    for document in Document.objects.all():
        assert hashlib.sha256(document.file.open("rb").read()).hexdigest() == document.content_hash
    assert_append_only()
    # The API token issued by the previous release still signs its owner in (its expiry moved past today).
    ApiToken.objects.update(expires_at=timezone.now() + timedelta(days=1))
    plaintext = EXPECTED["postgresql_token" if connection.vendor == "postgresql" else "token"]
    assert accounts.token_authenticate(plaintext=plaintext).user == outsider  # type: ignore[union-attr]


def test_the_previous_release_database_migrates_and_works(settings) -> None:
    _load_previous_release(settings)
    pending = _pending()
    assert "catalog.0001_initial" in pending and "accounts.0004_preference" in pending
    call_command("migrate", interactive=False, verbosity=0)
    assert _pending() == []
    call_command("rebuild_index", verbosity=0)
    _check_the_product_works()


def test_an_archive_of_the_previous_release_is_restored_then_migrated(settings, tmp_path: Path) -> None:
    _load_previous_release(settings)
    archive = tmp_path / "previous.tar"
    backup = services.backup_create(output=archive)
    assert "catalog" not in backup.manifest.heads
    wipe_database()
    settings.MEDIA_ROOT, settings.INDEX_DIR = tmp_path / "new-files", tmp_path / "new-indexes"
    result = services.backup_restore(archive=archive)
    assert "catalog.0001_initial" in result.migrated and _pending() == []
    assert result.indexed[EXPECTED["collection"]] > 0
    _check_the_product_works()
