"""Secrets sealed at rest and never shown back; ``manage.py connector`` end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from assistant.audit.models import AuditEvent
from assistant.connectors import services
from assistant.connectors.models import Connector
from assistant.connectors.secrets import CredentialsUnavailable, credentials_open, new_key
from ingest.models import Document
from tests.connectors.conftest import write

pytestmark = pytest.mark.django_db

SECRET = "hunter2-Sesame-0451"


def manage(*args: str) -> str:
    out = io.StringIO()
    call_command("connector", *args, stdout=out)
    return out.getvalue()


def test_credentials_are_encrypted_in_the_database_and_absent_from_audit_and_list(
    source: Path, collection, settings, monkeypatch
) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()
    monkeypatch.setenv("SHARE_PASSWORD", SECRET)
    manage("add", "--collection", collection.name, "--type", "folder", "--name", "vault", "--path", str(source),
           "--secret-env", "SHARE_PASSWORD")  # fmt: skip
    connector = Connector.objects.get(name="vault")
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM connectors_connector WHERE id = %s", [connector.pk])
        raw = bytes(cursor.fetchone()[0])
    assert raw and SECRET.encode() not in raw
    assert credentials_open(connector.credentials) == {"secret": SECRET}
    events = AuditEvent.objects.filter(action__startswith="connector.")
    assert events.exists() and all(SECRET not in json.dumps(e.details) for e in events)
    listed = manage("list", "--json")
    assert SECRET not in listed and json.loads(listed)["has_credentials"] is True
    # A changed key cannot read them, and says so.
    settings.CONNECTOR_SECRET_KEY = new_key()
    with pytest.raises(CredentialsUnavailable, match="CONNECTOR_SECRET_KEY"):
        credentials_open(connector.credentials)


def test_credentials_without_a_key_are_refused(source: Path, collection, settings) -> None:
    settings.CONNECTOR_SECRET_KEY = ""
    with pytest.raises(CredentialsUnavailable, match="CONNECTOR_SECRET_KEY is not set"):
        services.connector_add(
            collection=collection, kind="folder", name="x", settings={"path": str(source)}, credentials={"secret": "s"}
        )
    assert not Connector.objects.exists()


def test_bad_settings_are_refused_with_the_reason(source: Path, collection) -> None:
    with pytest.raises(CommandError, match="No such folder"):
        manage("add", "--collection", collection.name, "--type", "folder", "--name", "a", "--path", "/no/such")
    with pytest.raises(CommandError, match="needs --host"):
        manage("add", "--collection", collection.name, "--type", "imap", "--name", "a", "--user", "anna")
    with pytest.raises(CommandError, match="GLOB=GROUP"):
        manage("add", "--collection", collection.name, "--type", "folder", "--name", "a", "--path", str(source),
               "--map", "hr")  # fmt: skip
    assert not Connector.objects.exists()


def test_sync_json_prints_one_object_per_item_then_a_summary(source: Path, collection) -> None:
    write(source, "a.md", "# A\n\nAlpha.", mtime=1_700_000_000)
    write(source, "b/c.md", "# C\n\nCharlie.", mtime=1_700_000_000)
    manage("add", "--collection", collection.name, "--type", "folder", "--name", "docs", "--path", str(source),
           "--include", "**/*.md", "--map", "**=*", "--every", "30")  # fmt: skip

    dry = [json.loads(line) for line in manage("sync", "docs", "--dry-run", "--json").splitlines()]
    assert dry[:-1] == [
        {"source_id": "a.md", "name": "a.md", "action": "added", "error": ""},
        {"source_id": "b/c.md", "name": "c.md", "action": "added", "error": ""},
    ]
    assert dry[-1]["summary"]["dry_run"] is True and not Document.objects.exists()

    lines = [json.loads(line) for line in manage("sync", "docs", "--wait", "--inline", "--json").splitlines()]
    assert [(r["source_id"], r["action"]) for r in lines[:-1]] == [("a.md", "added"), ("b/c.md", "added")]
    summary = lines[-1]["summary"]
    assert summary["added"] == 2 and summary["seen"] == 2 and summary["documents_failed"] == 0
    assert set(Document.objects.values_list("status", flat=True)) == {"ready"}

    (source / "a.md").unlink()
    lines = [json.loads(line) for line in manage("sync", "docs", "--wait", "--inline", "--json").splitlines()]
    assert [(r["source_id"], r["action"]) for r in lines[:-1]] == [("b/c.md", "unchanged"), ("a.md", "deleted")]

    listed = json.loads(manage("list", "--json"))
    assert listed["every_minutes"] == 30 and listed["summary"]["deleted"] == 1 and listed["state"] == "idle"
    assert "Paused" in manage("pause", "docs")
    with pytest.raises(CommandError, match="paused"):
        manage("sync", "docs", "--wait")
    assert "Resumed" in manage("resume", "docs")
    assert "1 document(s) deleted" in manage("remove", "docs", "--delete-documents")
    assert not Connector.objects.exists() and not Document.objects.exists()
