"""``manage.py backup`` and ``restore``: a whole instance survives being wiped, and a bad archive changes nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from assistant.accounts import services as accounts
from assistant.accounts.selectors import documents_visible_to
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.backup import postgresql, services
from assistant.backup.archive import MANIFEST, ORIGINALS, BackupError
from assistant.chat.models import Conversation, Message
from ingest import pipeline
from ingest import services as ingest
from ingest.models import Chunk, Collection, Document
from tests.backup.support import assert_append_only, audit_rows, search, wipe_database

pytestmark = pytest.mark.django_db(transaction=True)

TRAVEL = b"Travel policy\n\nThe meal allowance abroad is 60 euros per day. Hotels are booked by the travel office."
SALARIES = b"Salary bands\n\nThe quartermaster salary band Q7 ranges from 81,000 to 94,000 euros a year."


@pytest.fixture
def instance(settings, tmp_path: Path) -> dict[str, object]:
    """Two collections, users in groups, a visible and a restricted document ingested for real, a chat, audit events."""
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    (settings.DATA_DIR / "secret_key").write_text(settings.SECRET_KEY)
    admin = User.objects.create_superuser("admin", password="pw-for-tests")
    insider = accounts.user_add(username="insider", groups=["hr", "staff"]).user
    outsider = accounts.user_add(username="outsider", groups=["staff"]).user
    policies = ingest.collection_create(name="Policies", user=admin)
    accounts.collection_grant(collection=policies, role="read", group=Group.objects.get(name="staff"), actor=admin)
    ingest.collection_create(name="Empty", user=admin)
    travel = ingest.document_upload(collection=policies, name="travel.txt", fileobj=io.BytesIO(TRAVEL), enqueue=False)
    salaries = ingest.document_upload(
        collection=policies,
        name="salaries.txt",
        fileobj=io.BytesIO(SALARIES),
        enqueue=False,
        restrict_to_groups=[Group.objects.get(name="hr")],
    )
    pipeline.documents_process_here(document_ids=[travel.document.pk, salaries.document.pk], together=True)
    assert Document.objects.filter(status=Document.Status.READY).count() == 2
    conversation = Conversation.objects.create(user=outsider, collection=policies, title="Meals")
    Message.objects.create(conversation=conversation, role="user", content="Meal allowance abroad?")
    audit_record(action=AuditEvent.Action.USER_LOGIN, actor=outsider, details={"n": 1})
    token = accounts.token_create(user=outsider, name="backup test")
    return {"policies": policies, "insider": insider, "outsider": outsider, "token": token.plaintext}


def _content() -> dict[str, object]:
    return {
        "documents": list(
            Document.objects.order_by("pk").values(
                "pk", "name", "status", "content_hash", "file", "restricted_to_groups__name"
            )
        ),
        "chunks": list(Chunk.objects.order_by("pk").values_list("pk", "document_id", "text", "embedding")),
        "users": list(User.objects.order_by("pk", "groups__name").values_list("username", "password", "groups__name")),
        "messages": list(Message.objects.order_by("pk").values_list("conversation__title", "role", "content")),
    }


def test_a_wiped_instance_comes_back_whole(instance, settings, tmp_path: Path) -> None:
    before, audit_before = _content(), audit_rows()
    originals = {d.file.name: d.file.open("rb").read() for d in Document.objects.all()}
    archive = tmp_path / "backup.tar"
    out = io.StringIO()
    call_command("backup", output=str(archive), stdout=out)
    assert "2 documents" in out.getvalue()
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    assert manifest["counts"]["documents"] == 2 and manifest["heads"]["audit"] == "0002_auditor_permission"
    assert {m for m in manifest["members"] if m.startswith(ORIGINALS)} == {ORIGINALS + str(n) for n in originals}

    # A fresh database and a fresh data folder: nothing of the old instance is left.
    wipe_database()
    settings.MEDIA_ROOT, settings.INDEX_DIR = tmp_path / "new-files", tmp_path / "new-indexes"
    settings.DATA_DIR = tmp_path / "new-data"
    settings.DATA_DIR.mkdir()
    out = io.StringIO()
    call_command("restore", str(archive), stdout=out)
    assert "Rebuilt the indexes of Policies: " in out.getvalue()

    assert _content() == before
    assert audit_rows() == audit_before
    assert_append_only()
    for document in Document.objects.all():
        assert document.file.open("rb").read() == originals[document.file.name]
    assert (settings.DATA_DIR / "secret_key").read_text() == settings.SECRET_KEY
    assert any(Path(settings.INDEX_DIR).glob("collection-*.faiss"))

    # The permissions hold through the real selectors and search, on the rebuilt indexes.
    policies = Collection.objects.get(name="Policies")
    insider, outsider = User.objects.get(username="insider"), User.objects.get(username="outsider")
    assert set(documents_visible_to(user=outsider, collection=policies).values_list("name", flat=True)) == {
        "travel.txt"
    }
    assert "salaries.txt" in documents_visible_to(user=insider, collection=policies).values_list("name", flat=True)
    for kind in ("dense", "lexical", "hybrid"):
        assert "81,000" in search(user=insider, collection=policies, query="quartermaster salary band Q7", kind=kind)
        assert "81,000" not in search(
            user=outsider, collection=policies, query="quartermaster salary band Q7", kind=kind
        )
    assert "60 euros" in search(user=outsider, collection=policies, query="meal allowance abroad")
    assert accounts.token_authenticate(plaintext=instance["token"]).user == outsider  # type: ignore[union-attr]

    # The restored database goes on: new rows take new ids.
    event = audit_record(action=AuditEvent.Action.USER_LOGIN, actor=insider)
    assert event.pk > max(row["id"] for row in audit_before)


def test_restore_refuses_an_instance_that_holds_data_unless_forced(instance, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    services.backup_create(output=archive)
    Collection.objects.create(name="Made after the backup")
    with pytest.raises(CommandError, match=r"already holds data \(.*--force"):
        call_command("restore", str(archive))
    assert Collection.objects.filter(name="Made after the backup").exists()
    result = services.backup_restore(archive=archive, force=True)
    assert not Collection.objects.filter(name="Made after the backup").exists()
    assert result.counts["documents"] == 2 and result.indexed == {"Policies": Chunk.objects.count(), "Empty": 0}
    assert_append_only()


def _rewritten(archive: Path, target: Path, change) -> Path:
    """A copy of ``archive`` with ``change(name, data) -> data`` applied to every member."""
    with tarfile.open(archive) as source, tarfile.open(target, "w") as out:
        for member in source.getmembers():
            data = change(member.name, source.extractfile(member).read())  # type: ignore[union-attr]
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return target


def test_a_damaged_or_unfit_archive_is_refused_and_changes_nothing(instance, settings, tmp_path: Path) -> None:
    archive = tmp_path / "backup.tar"
    services.backup_create(output=archive)
    marker = Collection.objects.create(name="Still here")
    files_before = sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())
    audit_before = audit_rows()

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])

    def flip(name: str, data: bytes) -> bytes:
        return data.replace(b"60 euros", b"99 euros") if name.startswith(ORIGINALS) else data

    def from_the_future(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        manifest = json.loads(data)
        manifest["migrations"].append(["ingest", "9999_from_a_later_version"])
        return json.dumps(manifest).encode()

    def other_engine(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        manifest = json.loads(data)
        manifest["vendor"] = "sqlite" if manifest["vendor"] == "postgresql" else "postgresql"
        return json.dumps(manifest).encode()

    cases = {
        truncated: "not a complete backup archive",
        _rewritten(archive, tmp_path / "flipped.tar", flip): "checksum mismatch",
        _rewritten(archive, tmp_path / "future.tar", from_the_future): "newer version .*9999_from_a_later_version",
        _rewritten(archive, tmp_path / "engine.tar", other_engine): "instance runs on",
        tmp_path / "missing.tar": "no such backup archive",
    }
    (tmp_path / "garbage.tar").write_bytes(b"not a tar file at all" * 100)
    cases[tmp_path / "garbage.tar"] = "not a complete backup archive"
    for bad, message in cases.items():
        with pytest.raises(CommandError, match=f"Restore failed: .*{message}"):
            call_command("restore", str(bad), "--force")
        assert Collection.objects.filter(pk=marker.pk).exists(), bad
    assert audit_rows() == audit_before
    assert sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()) == files_before
    assert not list(Path(settings.MEDIA_ROOT).parent.glob(".restore-*"))


def test_backup_errors_are_readable(instance, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        call_command("backup", output=str(tmp_path / "no-such-folder" / "b.tar"))
    taken = tmp_path / "taken.tar"
    taken.write_bytes(b"")
    with pytest.raises(CommandError, match="already exists"):
        call_command("backup", output=str(taken))
    with pytest.raises(CommandError, match=r"cannot write /proc/b\.tar"):
        call_command("backup", output="/proc/b.tar")  # refused even to root
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(CommandError, match="not writable"):
            call_command("backup", output=str(locked / "b.tar"))
    with pytest.raises(BackupError, match="pg_nonexistent was not found: install the PostgreSQL 15 client"):
        postgresql.client("pg_nonexistent", at_least=15)
    assert not list(tmp_path.glob(".*partial")) and not list(tmp_path.glob(".backup-*"))


def test_a_postgresql_load_cut_short_leaves_the_database_as_it_was(instance, monkeypatch, tmp_path: Path) -> None:
    # The schema is dropped and the dump loaded in one transaction, committed only once
    # pg_restore has written all of it: here it dies half-way through its script.
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the SQLite copy replaces the database in one step of the backup API")
    archive = tmp_path / "backup.tar"
    services.backup_create(output=archive)
    marker = Collection.objects.create(name="Still here")
    real, _ = postgresql.client("pg_restore", at_least=postgresql.server_major())
    dying = tmp_path / "pg_restore"
    # Up to the end of the first table's data: whole statements, so a COMMIT after them would take.
    cut = r"sed '/^\\\.$/q'"
    dying.write_text(f'#!/bin/sh\n[ "$1" = --list ] && exec {real} "$@"\n{real} "$@" | {cut}\nexit 1\n')
    dying.chmod(0o755)
    client = postgresql.client
    monkeypatch.setattr(
        postgresql,
        "client",
        lambda name, at_least: (str(dying), "pg_restore") if name == "pg_restore" else client(name, at_least=at_least),
    )
    with pytest.raises(BackupError, match="pg_restore failed, the database is unchanged"):
        services.backup_restore(archive=archive, force=True)
    assert Collection.objects.filter(pk=marker.pk).exists()
    assert Document.objects.count() == 2
    assert_append_only()
