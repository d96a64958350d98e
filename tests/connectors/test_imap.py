"""A mailbox connector against a real Dovecot on loopback: what happens in the mailbox is what the collection holds."""

from __future__ import annotations

import imaplib
import io
import json
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from django.core.management import call_command

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat_services
from assistant.connectors import selectors, services, sync
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.secrets import new_key
from assistant.connectors.sources import SourceError, source_type
from ingest.models import Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.conftest import (
    actions,
    assert_a_dropped_connection_is_made_again_once,
    assert_same_as_control,
    killed_after,
    names_found,
    resumed,
    run,
)
from tests.factories import GroupFactory, UserFactory
from tests.support.mailservers import Server, dovecot

# Starts its own server and needs nothing of a pass's settings but the database.
pytestmark = [pytest.mark.django_db, pytest.mark.once]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture(autouse=True)
def _sealing_key(settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with dovecot() as found:
        yield found


def login(server: Server) -> imaplib.IMAP4:
    client = imaplib.IMAP4(server.host, server.port)
    client.login(server.user, server.password)
    return client


@pytest.fixture
def mailbox(server: Server) -> Iterator[imaplib.IMAP4]:
    """The test user's mailbox, emptied: INBOX only, no messages."""
    client = login(server)
    for line in client.list()[1]:
        assert isinstance(line, bytes)
        name = line.decode().rsplit(" ", 1)[-1].strip('"')
        if name != "INBOX":
            client.delete(name)
    if client.select("INBOX")[1][0] != b"0":
        client.store("1:*", "+FLAGS", "(\\Deleted)")
        client.expunge()
    yield client
    client.logout()


def message(subject: str, body: str, *, attachment: Path | None = None) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Anna Berg <anna@example.com>"
    mail["To"] = "team@example.com"
    mail["Subject"] = subject
    mail["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content(body)
    if attachment is not None:
        maintype, subtype = DOCX.split("/")
        mail.add_attachment(attachment.read_bytes(), maintype=maintype, subtype=subtype, filename=attachment.name)
    return mail.as_bytes()


def deliver(client: imaplib.IMAP4, raw: bytes, folder: str = "INBOX") -> int:
    status, data = client.append(folder, None, None, raw)
    assert status == "OK", data
    return int(data[0].split(b"APPENDUID ")[1].split(b"]")[0].split()[1])


def uidvalidity(client: imaplib.IMAP4, folder: str) -> str:
    client.select(folder)
    return str(client.response("UIDVALIDITY")[1][0].decode())


def expunge(client: imaplib.IMAP4, folder: str, uid: int) -> None:
    client.select(folder)
    client.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
    client.expunge()


def imap_connector(collection, server: Server, **settings_: object) -> Connector:
    return services.connector_add(
        collection=collection, kind="imap", name=f"mail-{collection.pk}",
        settings={"host": server.host, "port": server.port, "security": "plain", "allow_plain": True,
                  "user": server.user, **settings_},
        credentials={"secret": server.password},
    )  # fmt: skip


def found(query: str, collection, user=None) -> list[str]:
    return [
        p.document_name for p in chat_services.passages_retrieve(user=user, collection=collection, query=query, k=3)
    ]


def test_the_mailbox_is_synced_incrementally_with_attachments_deletions_and_moves(
    server: Server, mailbox: imaplib.IMAP4, collection, formats_dir: Path
) -> None:
    deliver(mailbox, message("Lighthouse budget", "The lighthouse repair budget is 40,000 euros."))
    parrots = deliver(
        mailbox, message("Parrots attached", "See the attached notes.", attachment=formats_dir / "simple.docx")
    )
    connector = imap_connector(
        collection, server, folders=["INBOX", "Archive"], groups=[{"glob": "**", "groups": ["*"]}]
    )
    assert "no folder 'Archive'" in run(connector).error  # a folder that is not there refuses the sync
    mailbox.create("Archive")

    first = run(connector)
    assert not first.error
    assert sorted(first.counts.items()) == sorted({**dict.fromkeys(sync.ACTIONS, 0), "added": 2}.items())
    validity = uidvalidity(mailbox, "INBOX")
    assert set(actions(first)) == {f"INBOX/{validity}/1", f"INBOX/{validity}/{parrots}"}
    message_doc = Document.objects.get(collection=collection, name="Parrots attached.eml")
    attachment = Document.objects.get(collection=collection, parent=message_doc)
    assert attachment.name == "simple.docx" and attachment.status == "ready"
    assert "favorite things" in " ".join(attachment.chunks.values_list("text", flat=True))
    assert found("favorite things parrots hockey", collection)[0] == "simple.docx"
    link = selectors.source_link(document_id=message_doc.pk)
    assert link == f"imap://anna@127.0.0.1:{server.port}/INBOX;UIDVALIDITY={validity}/;UID={parrots}"

    # Nothing new: the listing is UIDs, sizes and flags; no message is fetched.
    second = run(connector)
    assert set(actions(second).values()) == {"unchanged"}
    assert second.fetched == 0 and second.bytes_read == 0

    # A new message, an expunged one, and a message moved into another folder.
    deliver(mailbox, message("Harbour office", "The new harbour office opens with a kelp garden."))
    expunge(mailbox, "INBOX", 1)
    mailbox.select("INBOX")
    mailbox.uid("COPY", str(parrots), "Archive")
    expunge(mailbox, "INBOX", parrots)
    chunks = set(message_doc.chunks.values_list("pk", flat=True))
    third = run(connector)
    archive_validity = uidvalidity(mailbox, "Archive")
    assert actions(third) == {
        f"INBOX/{validity}/1": "deleted", f"INBOX/{validity}/3": "added",
        f"Archive/{archive_validity}/1": "renamed",
    }  # fmt: skip
    assert not Document.objects.filter(name="Lighthouse budget.eml").exists()
    message_doc.refresh_from_db()  # the moved message keeps its document, passages and attachment
    assert set(message_doc.chunks.values_list("pk", flat=True)) == chunks
    assert Document.objects.filter(pk=attachment.pk, parent=message_doc).exists()
    assert "Archive" in selectors.source_link(document_id=message_doc.pk)
    # Right after the sync that brought it, retrieval finds the new message's text.
    assert found("harbour office kelp garden", collection)[0] == "Harbour office.eml"

    # The server renumbers a folder (a new UIDVALIDITY): its messages are matched, not ingested again.
    raw = mailbox.uid("FETCH", "1", "(BODY.PEEK[])")[1][0][1]
    mailbox.select("INBOX")
    mailbox.delete("Archive")
    mailbox.create("Archive")
    deliver(mailbox, raw, "Archive")
    fourth = run(connector)
    assert fourth.counts["renamed"] == 1 and fourth.counts["added"] == 0 and fourth.counts["deleted"] == 0
    assert Document.objects.filter(collection=collection, parent=None).count() == 2
    assert ConnectorItem.objects.filter(connector=connector).count() == 2


def test_an_answer_right_after_a_sync_cites_the_corrected_message_and_keeps_the_restricted_one_from_outsiders(
    server: Server, mailbox: imaplib.IMAP4, collection, readers, answering
) -> None:
    """A message never changes under its UID: a correction is a new message and the old one expunged."""
    mailbox.create("HR")
    parking = deliver(mailbox, message("Parking", PARKING.before))
    salaries = deliver(mailbox, message("Salaries", SALARIES.before), "HR")
    connector = imap_connector(
        collection, server, folders=["INBOX", "HR"],
        groups=[{"glob": "HR", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}],
    )  # fmt: skip
    assert not run(connector).error
    public, restricted = "Parking.eml", "Salaries.eml"
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=False)

    deliver(mailbox, message("Parking", PARKING.after))
    expunge(mailbox, "INBOX", parking)
    deliver(mailbox, message("Salaries", SALARIES.after), "HR")
    expunge(mailbox, "HR", salaries)
    assert sorted(run(connector).counts.items()) == sorted(
        {**dict.fromkeys(sync.ACTIONS, 0), "added": 2, "deleted": 2}.items()
    )
    assert_answers(collection=collection, readers=readers, public=public, restricted=restricted, edited=True)


def test_the_owner_mapping_restricts_messages_and_their_attachments(
    server: Server, mailbox: imaplib.IMAP4, collection, formats_dir: Path, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    deliver(
        mailbox, message("Salary bands", "The salary policy of the company.", attachment=formats_dir / "simple.docx")
    )
    hr = GroupFactory.create(name="hr")
    outsider, member = UserFactory.create(), UserFactory.create()
    member.groups.add(hr)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
    # The mailbox's owner (anna) stands for the group hr.
    run(imap_connector(collection, server, groups=[{"glob": "**", "groups": ["hr"]}]))

    assert names_found(outsider, collection) == set()
    assert names_found(member, collection) == {"Salary bands.eml", "simple.docx"}


def test_an_unmapped_mailbox_is_for_the_managers_only(server: Server, mailbox: imaplib.IMAP4, collection) -> None:
    deliver(mailbox, message("Board", "The board meets on Friday."))
    run(imap_connector(collection, server))
    document = Document.objects.get(collection=collection)
    assert [g.name for g in document.restricted_to_groups.all()] == [sync.MANAGERS_ONLY_GROUP]


def test_a_wrong_password_is_a_clear_error_that_changes_nothing(
    server: Server, mailbox: imaplib.IMAP4, collection
) -> None:
    deliver(mailbox, message("Kept", "A message that stays."))
    connector = imap_connector(collection, server, groups=[{"glob": "**", "groups": ["*"]}])
    run(connector)
    services.connector_change(connector=connector, credentials={"secret": "wrong"})
    report = run(connector)
    assert "refused the login of 'anna'" in report.error and not report.items
    assert Document.objects.filter(collection=collection).count() == 1
    connector.refresh_from_db()
    assert "refused the login" in connector.last_error


def test_settings_refuse_plain_text_to_a_remote_host_and_need_a_server_and_user() -> None:
    clean = source_type("imap").clean_settings
    with pytest.raises(ValueError, match="loopback"):
        clean({"host": "mail.example.com", "user": "a", "security": "plain", "allow_plain": True})
    with pytest.raises(ValueError, match="loopback"):
        clean({"host": "127.0.0.1", "user": "a", "security": "plain"})
    with pytest.raises(ValueError, match="--host"):
        clean({"user": "a"})
    assert clean({"host": "mail.example.com", "user": "a"})["port"] == 993
    assert clean({"host": "m", "user": "a", "security": "starttls"})["port"] == 143


@pytest.mark.parametrize("security", ["imaps", "starttls"])
def test_tls_checks_the_server_certificate(server: Server, mailbox: imaplib.IMAP4, security: str) -> None:
    uid = deliver(mailbox, message("Encrypted", "Read over TLS."))
    settings_ = {"host": server.host, "port": server.tls_port if security == "imaps" else server.port,
                 "security": security, "user": server.user}  # fmt: skip
    imap = source_type("imap")
    trusted = imap(imap.clean_settings({**settings_, "cafile": str(server.cafile)}), {"secret": server.password})
    assert [i.extra["uid"] for i in trusted.list_items()] == [uid]
    trusted.close()  # type: ignore[attr-defined]
    # The same server, its certificate not trusted: refused before the password is sent.
    untrusted = imap(imap.clean_settings(settings_), {"secret": server.password})
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        list(untrusted.list_items())


def test_an_unreachable_server_is_a_source_error(server: Server) -> None:
    source = source_type("imap")(
        {"host": "127.0.0.1", "port": 1, "security": "plain", "allow_plain": True, "user": "a", "folders": ["INBOX"],
         "include": [], "exclude": []}, {"secret": "x"},
    )  # fmt: skip
    with pytest.raises(SourceError, match="Cannot reach the IMAP server"):
        list(source.list_items())


def test_the_command_adds_an_imap_connector_and_syncs_it(
    server: Server, mailbox: imaplib.IMAP4, collection, monkeypatch
) -> None:
    deliver(mailbox, message("Quarterly figures", "The quarterly figures mention a walrus fund."))
    monkeypatch.setenv("MAILBOX_PASSWORD", server.password)
    out = io.StringIO()
    call_command(
        "connector", "add", "--collection", collection.name, "--type", "imap", "--name", "board-mail",
        "--host", server.host, "--port", str(server.port), "--security", "plain", "--allow-plain",
        "--user", server.user, "--folder", "INBOX", "--map", "**=*", "--secret-env", "MAILBOX_PASSWORD", stdout=out,
    )  # fmt: skip
    connector = Connector.objects.get(name="board-mail")
    assert connector.settings["folders"] == ["INBOX"] and server.password not in json.dumps(connector.settings)
    out = io.StringIO()
    call_command("connector", "sync", "board-mail", "--wait", "--inline", "--json", stdout=out)
    summary = json.loads(out.getvalue().splitlines()[-1])["summary"]
    assert summary["added"] == 1 and summary["documents_failed"] == 0
    assert found("walrus fund", collection)[0] == "Quarterly figures.eml"


def test_a_manager_adds_a_mailbox_in_the_portal(client, server: Server, collection) -> None:
    manager = UserFactory.create()
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    client.force_login(manager)
    page = client.get(f"/portal/collections/{collection.pk}/").content.decode()
    assert 'id="connector-add-imap"' in page
    response = client.post(
        f"/portal/collections/{collection.pk}/connectors/add",
        {"kind": "imap", "name": "Board mail", "host": "mail.example.com", "security": "starttls", "user": "board",
         "password": "pw-from-the-form", "folders": "INBOX\nProjects", "groups": "**=board", "every": "30"},
    )  # fmt: skip
    assert response.status_code == 302
    connector = Connector.objects.get(name="Board mail")
    assert connector.kind == "imap" and connector.settings["port"] == 143
    assert connector.settings["folders"] == ["INBOX", "Projects"]
    assert connector.settings["groups"] == [{"glob": "**", "groups": ["board"]}]
    assert b"pw-from-the-form" not in bytes(connector.credentials)
    assert "pw-from-the-form" not in client.get(f"/portal/collections/{collection.pk}/").content.decode()


def test_a_message_moved_into_another_folder_or_a_changed_mapping_re_restricts_without_re_embedding(
    server: Server, mailbox: imaplib.IMAP4, collection, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    pay = deliver(mailbox, message("Pay bands", "The pay policy of the company: bands A to F."))
    deliver(mailbox, message("Canteen", "The canteen policy of the company: lunch at noon."))
    mailbox.create("Board")
    mapping = [{"glob": "INBOX", "groups": ["*"]}, {"glob": "**", "groups": ["hr"]}]
    connector = imap_connector(collection, server, include=["Board"], groups=mapping)
    run(connector)
    assert names_found(readers["outsider"], collection) == {"Pay bands.eml", "Canteen.eml"}
    document = Document.objects.get(collection=collection, name="Pay bands.eml")
    chunks = set(document.chunks.values_list("pk", flat=True))

    # Moved into Board, which the mapping gives to hr: the same document, restricted.
    mailbox.select("INBOX")
    mailbox.uid("COPY", str(pay), "Board")
    expunge(mailbox, "INBOX", pay)
    report = run(connector)
    assert sorted(actions(report).values()) == ["renamed", "unchanged"] and report.queued == []
    assert names_found(readers["outsider"], collection) == {"Canteen.eml"}
    assert names_found(readers["member"], collection) == {"Pay bands.eml", "Canteen.eml"}

    # The mapping changes: INBOX is for hr only now; no message is read or embedded again.
    services.connector_change(connector=connector, settings={"groups": [{"glob": "**", "groups": ["hr"]}]})
    report = run(connector)
    assert sorted(actions(report).values()) == ["permissions", "unchanged"]
    assert report.fetched == 0 and report.queued == []
    assert names_found(readers["outsider"], collection) == set()
    assert names_found(readers["member"], collection) == {"Pay bands.eml", "Canteen.eml"}
    assert set(Document.objects.get(pk=document.pk).chunks.values_list("pk", flat=True)) == chunks


def test_a_connection_dropped_during_a_sync_is_made_again_once_or_fails_with_the_reason(
    server: Server, mailbox: imaplib.IMAP4, collection
) -> None:
    for n in range(4):
        deliver(mailbox, message(f"Note {n}", f"Note number {n} about the harbour."))
    assert_a_dropped_connection_is_made_again_once(
        server.host, server.port,
        lambda port: imap_connector(collection, server, port=port, groups=[{"glob": "**", "groups": ["*"]}]),
        unreachable="Cannot reach the IMAP server",
    )  # fmt: skip


def test_a_sync_killed_mid_way_resumes_across_a_renumbered_folder_without_duplicates(
    server: Server, mailbox: imaplib.IMAP4, collection, control, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    mailbox.create("Archive")
    mailbox.create("HR")
    deliver(mailbox, message("Salaries", "The staff salary bands run from A to F."), "HR")
    notices = [
        deliver(mailbox, message(f"Notice {n}", f"Staff notice number {n} about the harbour."), "Archive")
        for n in range(1, 4)
    ]
    canteen = deliver(mailbox, message("Canteen", "The staff canteen opens at noon."))
    groups = [{"glob": "HR", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}]
    connector = imap_connector(collection, server, folders=["INBOX", "Archive", "HR"], groups=groups)
    archive = uidvalidity(mailbox, "Archive")

    # Killed after the first two messages of Archive (ids sort by folder, UIDVALIDITY, UID).
    settled = killed_after(connector, f"Archive/{archive}/{notices[1]}")
    assert [i.action for i in settled] == ["added", "added"]
    # Meanwhile the server renumbers Archive (its messages get new UIDs), and one message is expunged.
    mailbox.select("Archive")
    raw = {uid: mailbox.uid("FETCH", str(uid), "(BODY.PEEK[])")[1][0][1] for uid in notices}
    mailbox.select("INBOX")
    mailbox.delete("Archive")
    mailbox.create("Archive")
    for uid in (notices[1], notices[2], notices[0]):
        deliver(mailbox, raw[uid], "Archive")
    renumbered = uidvalidity(mailbox, "Archive")
    assert renumbered != archive
    expunge(mailbox, "INBOX", canteen)  # gone before it was synced: never added

    report = resumed(connector, settings)
    # The two it stored are matched by their bytes (no new document); the others are new.
    assert report.counts["renamed"] == 2 and report.counts["added"] == 2 and report.counts["deleted"] == 0
    assert sorted(Document.objects.filter(collection=collection).values_list("name", flat=True)) == [
        "Notice 1.eml", "Notice 2.eml", "Notice 3.eml", "Salaries.eml",
    ]  # fmt: skip
    assert all(sid.startswith(("HR/", f"Archive/{renumbered}/")) for sid in actions(report))
    again = run(connector)
    assert set(actions(again).values()) == {"unchanged"} and again.fetched == 0

    run(uninterrupted := imap_connector(control, server, folders=["INBOX", "Archive", "HR"], groups=groups))
    assert_same_as_control(connector, uninterrupted, users=readers, query="staff", restricted="Salaries.eml")
