"""An SMB share connector against a real Samba on loopback (no mount): the share's changes are the collection's."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat_services
from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.secrets import new_key
from assistant.connectors.sources import source_type
from ingest.models import Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.conftest import actions, assert_a_dropped_connection_is_made_again_once, run, write
from tests.factories import UserFactory
from tests.support.mailservers import Server, samba

# Starts its own server and needs nothing of a pass's settings but the database.
pytestmark = [pytest.mark.django_db, pytest.mark.once]


@pytest.fixture(autouse=True)
def _sealing_key(settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with samba() as found:
        yield found


@pytest.fixture
def share(server: Server) -> Path:
    """The share's folder on disk, emptied."""
    for child in server.root.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    return server.root


def smb_connector(collection, server: Server, **settings_: object) -> Connector:
    return services.connector_add(
        collection=collection, kind="smb", name=f"smb-{collection.pk}",
        settings={"host": server.host, "port": server.port, "share": "docs", "user": server.user, **settings_},
        credentials={"secret": server.password},
    )  # fmt: skip


def test_edit_add_delete_and_rename_on_the_share_are_reflected_by_the_next_sync(
    server: Server, share: Path, collection
) -> None:
    write(share, "alpha.md", "# Alpha\n\nThe alpha plan starts in spring.", mtime=1_700_000_000)
    write(share, "team/beta.md", "# Beta\n\nThe beta team meets on Tuesdays in room 4.", mtime=1_700_000_000)
    write(share, "gamma.txt", "Gamma notes about the old warehouse.", mtime=1_700_000_000)
    connector = smb_connector(collection, server, groups=[{"glob": "**", "groups": ["*"]}])

    first = run(connector)
    assert not first.error
    assert actions(first) == {"alpha.md": "added", "team/beta.md": "added", "gamma.txt": "added"}
    beta = Document.objects.get(collection=collection, name="beta.md")
    chunks = set(beta.chunks.values_list("pk", flat=True))
    assert selectors.source_link(document_id=beta.pk) == f"smb://127.0.0.1:{server.port}/docs/team/beta.md"

    # Nothing changed: the listing is names, times and sizes; no file is read.
    second = run(connector)
    assert set(actions(second).values()) == {"unchanged"}
    assert second.fetched == 0 and second.bytes_read == 0

    write(share, "alpha.md", "# Alpha\n\nThe alpha plan now starts with the quokka survey.", mtime=1_700_000_100)
    write(share, "delta.md", "# Delta\n\nDelta covers the new harbour office.", mtime=1_700_000_100)
    (share / "gamma.txt").unlink()
    (share / "team" / "moved").mkdir(mode=0o755)
    (share / "team" / "beta.md").rename(share / "team" / "moved" / "beta-renamed.md")

    third = run(connector)
    assert actions(third) == {
        "alpha.md": "updated", "delta.md": "added", "gamma.txt": "deleted", "team/moved/beta-renamed.md": "renamed",
    }  # fmt: skip
    beta.refresh_from_db()
    assert beta.name == "beta-renamed.md" and set(beta.chunks.values_list("pk", flat=True)) == chunks
    assert sorted(Document.objects.filter(collection=collection).values_list("name", flat=True)) == [
        "alpha.md", "beta-renamed.md", "delta.md",
    ]  # fmt: skip
    # Right after the sync that brought the edit, retrieval finds the new text.
    passages = chat_services.passages_retrieve(user=None, collection=collection, query="quokka survey", k=3)
    assert passages and passages[0].document_name == "alpha.md" and "quokka" in passages[0].text


def test_an_answer_right_after_a_sync_cites_the_edited_text_and_keeps_the_restricted_file_from_outsiders(
    server: Server, share: Path, collection, readers, answering
) -> None:
    write(share, "parking.md", f"# Parking\n\n{PARKING.before}", mtime=1_700_000_000)
    write(share, "hr/salaries.md", f"# Salaries\n\n{SALARIES.before}", mtime=1_700_000_000)
    connector = smb_connector(collection, server, groups=[
        {"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]},
    ])  # fmt: skip
    assert not run(connector).error
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=False)

    write(share, "parking.md", f"# Parking\n\n{PARKING.after}", mtime=1_700_000_100)
    write(share, "hr/salaries.md", f"# Salaries\n\n{SALARIES.after}", mtime=1_700_000_100)
    assert actions(run(connector)) == {"parking.md": "updated", "hr/salaries.md": "updated"}
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=True)


def test_a_folder_in_the_share_and_globs_choose_the_files(server: Server, share: Path, collection) -> None:
    for name in ("docs/a.md", "docs/b.txt", "docs/drafts/c.md", "docs/sub/d.md", "docs/.hidden.md", "other/e.md"):
        write(share, name, f"Text of {name}.")
    connector = smb_connector(collection, server, path="docs", include=["*.md"], exclude=["drafts/"])
    report = sync.connector_sync(connector=connector, dry_run=True)
    assert sorted(actions(report)) == ["a.md", "sub/d.md"]


def test_the_glob_mapping_restricts_who_reads_what(server: Server, share: Path, collection, readers, settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    write(share, "hr/salaries.md", "# Salaries\n\nThe salary policy of the company: bands A to F.")
    write(share, "public/holidays.md", "# Holidays\n\nThe holiday policy of the company: 30 days.")
    write(share, "board/minutes.md", "# Minutes\n\nThe board's policy of the company on mergers.")
    outsider, member, manager = readers["outsider"], readers["member"], readers["manager"]
    run(smb_connector(collection, server, groups=[
        {"glob": "hr/**", "groups": ["hr"]}, {"glob": "public/**", "groups": ["*"]},
    ]))  # fmt: skip

    def names(user) -> set[str]:
        ranked = chat_services.passages_ranked(user=user, collection=collection, query="policy of the company", k=50)
        return {p.document_name for p in ranked}

    assert names(outsider) == {"holidays.md"}
    assert names(member) == {"holidays.md", "salaries.md"}
    assert names(manager) == {"holidays.md", "salaries.md", "minutes.md"}


def test_the_files_own_acls_restrict_who_reads_what_and_an_acl_change_re_restricts(
    server: Server, share: Path, collection, readers, settings
) -> None:
    """Samba reports POSIX owners and groups as SIDs: a Unix group is S-1-22-2-<gid>
    (no idmap here), the "other" bits are Everyone (S-1-1-0)."""
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    account = pwd.getpwnam(server.user)  # what smbd reads the share as
    public = write(share, "public/holidays.md", "# Holidays\n\nThe holiday policy of the company: 30 days.")
    salaries = write(share, "hr/salaries.md", "# Salaries\n\nThe salary policy of the company: bands A to F.")
    minutes = write(share, "board/minutes.md", "# Minutes\n\nThe board's policy of the company on mergers.")
    public.chmod(0o644)  # other: read -> Everyone
    os.chown(salaries, -1, account.pw_gid)  # chgrp to the account's group: it reads the file through it
    salaries.chmod(0o640)
    os.chown(minutes, account.pw_uid, -1)  # only its owner reads it: a SID nobody mapped
    minutes.chmod(0o600)
    hr_sid = f"S-1-22-2-{account.pw_gid}"
    outsider, member, manager = readers["outsider"], readers["member"], readers["manager"]
    connector = smb_connector(
        collection, server, permissions="acl", acl_groups={hr_sid: ["hr"]},
        groups=[{"glob": "**", "groups": ["*"]}],  # not used: the ACLs decide
    )  # fmt: skip

    def names(user) -> set[str]:
        ranked = chat_services.passages_ranked(user=user, collection=collection, query="policy of the company", k=50)
        return {p.document_name for p in ranked}

    first = run(connector)
    assert not first.error and set(actions(first).values()) == {"added"}
    assert dict(ConnectorItem.objects.values_list("source_id", "access")) == {
        "public/holidays.md": ["*"], "hr/salaries.md": ["hr"], "board/minutes.md": [sync.MANAGERS_ONLY_GROUP],
    }  # fmt: skip
    assert names(outsider) == {"holidays.md"}
    assert names(member) == {"holidays.md", "salaries.md"}
    assert names(manager) == {"holidays.md", "salaries.md", "minutes.md"}
    chunks = set(Document.objects.get(name="salaries.md").chunks.values_list("pk", flat=True))

    # The ACL changes at the source (the content does not): re-restricted, nothing read or re-embedded.
    salaries.chmod(0o644)
    opened = run(connector)
    assert actions(opened) == {
        "board/minutes.md": "unchanged", "hr/salaries.md": "permissions", "public/holidays.md": "unchanged",
    }  # fmt: skip
    assert opened.fetched == 0 and opened.bytes_read == 0
    assert names(outsider) == {"holidays.md", "salaries.md"}
    salaries.chmod(0o640)
    closed = run(connector)
    assert actions(closed)["hr/salaries.md"] == "permissions" and closed.bytes_read == 0
    assert names(outsider) == {"holidays.md"} and names(member) == {"holidays.md", "salaries.md"}
    assert set(Document.objects.get(name="salaries.md").chunks.values_list("pk", flat=True)) == chunks


def test_acl_settings_name_sids() -> None:
    clean = source_type("smb").clean_settings
    base = {"host": "fs", "share": "s", "user": "u"}
    assert clean(base)["permissions"] == "map"
    found = clean({**base, "permissions": "acl", "acl_groups": [{"glob": "s-1-5-21-1-2-3-513", "groups": ["staff"]}]})
    assert found["acl_groups"] == {"S-1-5-21-1-2-3-513": ["staff"]}
    with pytest.raises(ValueError, match="not a SID: hr"):
        clean({**base, "permissions": "acl", "acl_groups": {"hr": ["hr"]}})
    with pytest.raises(ValueError, match="--permissions"):
        clean({**base, "permissions": "both"})


def test_a_wrong_password_is_a_clear_error_that_changes_nothing(server: Server, share: Path, collection) -> None:
    write(share, "kept.md", "# Kept\n\nA file that stays.")
    connector = smb_connector(collection, server, groups=[{"glob": "**", "groups": ["*"]}])
    run(connector)
    before = list(ConnectorItem.objects.values_list("source_id", "version", "content_hash", "document_id"))
    services.connector_change(connector=connector, credentials={"secret": "wrong"})
    (share / "kept.md").unlink()  # would be a deletion, if the share could be read
    report = run(connector)
    assert report.error == (
        f"The server 127.0.0.1:{server.port} refused the login of '{server.user}' (wrong user name or password)."
    )
    assert not report.items
    assert list(ConnectorItem.objects.values_list("source_id", "version", "content_hash", "document_id")) == before
    assert Document.objects.filter(collection=collection).count() == 1


def test_a_missing_share_is_a_source_error(server: Server, collection) -> None:
    source = source_type("smb")(
        {"host": server.host, "port": server.port, "share": "nope", "path": "", "user": server.user},
        {"secret": server.password},
    )
    with pytest.raises(Exception, match="Cannot list"):
        list(source.list_items())
    source.close()  # type: ignore[attr-defined]


def test_settings_need_a_server_a_share_and_an_account() -> None:
    clean = source_type("smb").clean_settings
    with pytest.raises(ValueError, match="--share"):
        clean({"host": "fs", "user": "u"})
    with pytest.raises(ValueError, match=r"'\.\.'"):
        clean({"host": "fs", "share": "s", "user": "u", "path": "a/../../b"})
    assert clean({"host": "fs", "share": "\\s\\", "user": "u", "path": "\\a\\b\\"})["path"] == "a/b"


def test_the_command_adds_an_smb_connector_and_syncs_it(server: Server, share: Path, collection, monkeypatch) -> None:
    write(share, "handbook/travel.md", "# Travel\n\nTravel by night train is refunded in full.")
    monkeypatch.setenv("SHARE_PASSWORD", server.password)
    call_command(
        "connector", "add", "--collection", collection.name, "--type", "smb", "--name", "handbook-smb",
        "--host", server.host, "--port", str(server.port), "--share", "docs", "--path", "handbook",
        "--user", server.user, "--map", "**=*", "--secret-env", "SHARE_PASSWORD", stdout=io.StringIO(),
    )  # fmt: skip
    out = io.StringIO()
    call_command("connector", "sync", "handbook-smb", "--wait", "--inline", "--json", stdout=out)
    assert json.loads(out.getvalue().splitlines()[0]) == {
        "source_id": "travel.md", "name": "travel.md", "action": "added", "error": "",
    }  # fmt: skip
    passages = chat_services.passages_retrieve(user=None, collection=collection, query="night train refunded", k=3)
    assert passages and passages[0].document_name == "travel.md"


def test_a_manager_adds_a_share_in_the_portal(client, collection) -> None:
    manager = UserFactory.create()
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    client.force_login(manager)
    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "smb", "name": "Public share", "host": "fs.example.com", "share": "Public", "path": "Handbook",
         "user": "CORP\\svc", "password": "pw-from-the-form", "include": "*.pdf", "groups": "hr/**=hr", "every": "60"},
    )  # fmt: skip
    assert response.status_code == 302
    connector = Connector.objects.get(name="Public share")
    assert connector.kind == "smb" and connector.settings["port"] == 445 and connector.settings["path"] == "Handbook"
    assert connector.settings["include"] == ["*.pdf"]
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert "fs.example.com/Public" in page and "pw-from-the-form" not in page
    assert connector.settings["permissions"] == "map"
    # The file's own ACLs instead, with the SIDs they name mapped to groups.
    client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "smb", "name": "ACL share", "host": "fs", "share": "s", "user": "u", "password": "pw", "every": "0",
         "permissions": "acl", "acl_groups": "S-1-5-21-1-2-3-1105=hr\nS-1-1-0=staff"},
    )  # fmt: skip
    acl = Connector.objects.get(name="ACL share").settings
    assert acl["permissions"] == "acl" and acl["acl_groups"] == {"S-1-5-21-1-2-3-1105": ["hr"], "S-1-1-0": ["staff"]}
    # Without a password the form is refused and nothing is added.
    client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "smb", "name": "No password", "host": "fs", "share": "s", "user": "u", "every": "0"},
    )
    assert not Connector.objects.filter(name="No password").exists()


def test_a_connection_dropped_during_a_sync_is_made_again_once_or_fails_with_the_reason(
    server: Server, share: Path, collection
) -> None:
    for n in range(4):
        write(share, f"note-{n}.txt", f"Note number {n} about the harbour.")
    assert_a_dropped_connection_is_made_again_once(
        server.host, server.port,
        lambda port: smb_connector(collection, server, port=port, groups=[{"glob": "**", "groups": ["*"]}]),
        unreachable="Cannot reach the SMB server", last="note-3.txt",
    )  # fmt: skip
