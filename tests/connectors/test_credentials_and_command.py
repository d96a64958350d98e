"""Secrets sealed at rest and never shown back; ``manage.py connector`` end to end."""

from __future__ import annotations

import base64
import getpass
import io
import json
import logging
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from assistant.audit.models import AuditEvent
from assistant.connectors import services, tasks
from assistant.connectors.models import Connector
from assistant.connectors.secrets import CredentialsUnavailable, credentials_open, new_key
from ingest.models import Document
from tests.connectors.conftest import write
from tests.connectors.intranet import Server, Site, page

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


def test_sync_json_without_wait_says_what_was_queued(
    source: Path, collection, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    manage("add", "--collection", collection.name, "--type", "folder", "--name", "docs", "--path", str(source))
    sent: list[tuple[tuple[int, ...], str | None]] = []
    monkeypatch.setattr(tasks.sync_connector, "apply_async", lambda args, task_id: sent.append((args, task_id)))
    with django_capture_on_commit_callbacks(execute=True):
        queued = json.loads(manage("sync", "docs", "--json"))
    connector = Connector.objects.get(name="docs")
    assert queued == {"connector": "docs", "queued": True, "task_id": queued["task_id"]}
    assert uuid.UUID(queued["task_id"]) and sent == [((connector.pk,), queued["task_id"])]
    assert connector.state == Connector.State.QUEUED
    assert json.loads(manage("sync", "docs", "--json")) == {"connector": "docs", "queued": False, "task_id": None}
    assert len(sent) == 1
    assert manage("sync", "docs") == "A sync of 'docs' is already queued or running.\n"  # text without --json


def test_a_prompted_secret_is_stored_and_never_shown_listed_audited_or_logged(
    collection, settings, monkeypatch, caplog, waits
) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()
    settings.CONNECTOR_RETRY_ATTEMPTS = 2
    server = Server(Site())
    server.site.login = ("crawler", "the-right-one")  # the prompted secret is refused: the sync fails
    server.site.put("/", page("Home", "<p>Welcome.</p>"))
    prompts: list[str] = []

    def prompted(prompt: str = "") -> str:
        prompts.append(prompt)
        return SECRET

    monkeypatch.setattr(getpass, "getpass", prompted)
    try:
        with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, "httpx"), \
                caplog.at_level(logging.DEBUG, "httpcore"):  # fmt: skip
            manage("add", "--collection", collection.name, "--type", "web", "--name", "intra", "--url",
                   server.url + "/", "--username", "crawler", "--secret-prompt")  # fmt: skip
            with pytest.raises(CommandError, match="refused the login") as failed:
                manage("sync", "intra", "--wait", "--inline", "--json")
    finally:
        server.close()
    connector = Connector.objects.get(name="intra")
    assert prompts and credentials_open(connector.credentials) == {"secret": SECRET}
    # It travelled (the server saw a login and refused it), and shows nowhere.
    assert [status for _, _, status in server.site.requests] == [401]
    assert SECRET not in str(failed.value) and "refused the login" in connector.last_error
    assert SECRET not in connector.last_error and SECRET not in json.dumps(connector.settings)
    assert SECRET not in manage("list", "--json")
    events = AuditEvent.objects.filter(action__startswith="connector.")
    assert events.exists() and all(SECRET not in json.dumps(e.details) for e in events)
    # The requests were logged (httpx and httpcore at DEBUG): none of it carries the secret.
    assert any(r.name.startswith("httpx") and "401" in r.getMessage() for r in caplog.records)
    as_sent = base64.b64encode(f"crawler:{SECRET}".encode()).decode()  # the basic login as it travels
    for record in caplog.records:
        for text in (record.getMessage(), record.exc_text or ""):
            assert SECRET not in text and as_sent not in text
