"""The auditor role: reading and exporting the audit log is not part of ``is_staff``.

Staff users may create collections; the log shows every user's questions and the
names of restricted documents. Each surface is tried by a staff user without the
role (who must not see them) and by an auditor (who must), with a restricted
document's upload and another user's question in the log.
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from ingest.models import Document
from tests.factories import CollectionFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action
SECRET_NAME = "layoffs-2027-shortlist.pdf"
SECRET_QUESTION = "Which teams are on the layoff shortlist?"
LOG_SURFACES = (
    reverse("audit:log"),
    reverse("audit:export", args=["csv"]),
    reverse("audit:export", args=["jsonl"]),
    reverse("admin:audit_auditevent_changelist"),
)


@pytest.fixture
def restricted_history() -> None:
    """A restricted document's upload and a board member's question, as recorded."""
    board = GroupFactory.create(name="Board")
    member = UserFactory.create(username="board-member")
    member.groups.add(board)
    collection = CollectionFactory.create(name="Board papers")
    document = Document.objects.create(collection=collection, name=SECRET_NAME, file="x", content_hash="0" * 64)
    document.restricted_to_groups.add(board)
    audit_record(action=Action.DOCUMENT_UPLOADED, actor=member, collection=collection, target=document,
                 details={"name": SECRET_NAME})  # fmt: skip
    audit_record(action=Action.QUESTION_ANSWERED, actor=member, collection=collection,
                 details={"question": SECRET_QUESTION})  # fmt: skip


def _content(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_staff_without_the_role_cannot_read_the_log_anywhere(client, restricted_history) -> None:
    staff = UserFactory.create(username="collection-admin", is_staff=True)
    client.force_login(staff)
    for url in LOG_SURFACES:
        response = client.get(url)
        assert response.status_code in (302, 403), url
        assert SECRET_NAME not in _content(response), url
        assert SECRET_QUESTION not in _content(response), url
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()
    # Nor is the log offered to them.
    assert reverse("audit:log") not in client.get(reverse("chat:home")).content.decode()
    assert "Audit log" not in client.get(reverse("admin:index")).content.decode()


def test_the_granted_role_opens_every_surface(client, restricted_history) -> None:
    staff = UserFactory.create(username="collection-admin", is_staff=True)
    call_command("audit", "grant", "--user", "collection-admin")
    client.force_login(staff)
    for url in LOG_SURFACES:
        response = client.get(url)
        assert response.status_code == 200, url
        assert SECRET_NAME in _content(response) or "admin" in url, url
    assert SECRET_QUESTION in client.get(reverse("audit:log")).content.decode()
    assert f'href="{reverse("audit:log")}"' in client.get(reverse("chat:home")).content.decode()
    assert "Audit log" in client.get(reverse("admin:index")).content.decode()


def test_an_auditor_needs_no_staff_flag_and_a_superuser_no_grant(client, restricted_history) -> None:
    auditor = UserFactory.create(username="external-auditor")
    call_command("audit", "grant", "--user", "external-auditor")
    client.force_login(auditor)
    assert SECRET_NAME in _content(client.get(reverse("audit:export", args=["jsonl"])))
    client.force_login(UserFactory.create(is_superuser=True, is_staff=True))
    assert SECRET_QUESTION in client.get(reverse("audit:log")).content.decode()


def test_the_role_through_a_group_follows_membership_and_revocation(client, restricted_history, capsys) -> None:
    auditors = GroupFactory.create(name="Auditors")
    carol = UserFactory.create(username="carol")
    carol.groups.add(auditors)
    client.force_login(carol)
    assert client.get(reverse("audit:log")).status_code == 403

    call_command("audit", "grant", "--group", "Auditors")
    assert SECRET_NAME in client.get(reverse("audit:log")).content.decode()
    call_command("audit", "auditors")
    assert "group Auditors" in capsys.readouterr().out

    call_command("audit", "revoke", "--group", "Auditors")
    assert client.get(reverse("audit:log")).status_code == 403
    assert client.get(reverse("audit:export", args=["csv"])).status_code == 403


def test_granting_and_revoking_are_recorded(capsys) -> None:
    UserFactory.create(username="dave")
    call_command("audit", "grant", "--user", "dave")
    call_command("audit", "grant", "--user", "dave")
    assert "already holds the auditor role" in capsys.readouterr().out
    call_command("audit", "revoke", "--user", "dave")
    call_command("audit", "revoke", "--user", "dave")
    assert "does not hold the auditor role" in capsys.readouterr().out
    events = AuditEvent.objects.filter(action__in=[Action.PERMISSION_GRANTED, Action.PERMISSION_REVOKED])
    details = {"role": "auditor", "permission": "audit.read_audit_log", "user": "dave"}
    assert [(e.action, e.target_type, e.details) for e in events.order_by("id")] == [
        (Action.PERMISSION_GRANTED, "auth.user", details),
        (Action.PERMISSION_REVOKED, "auth.user", details),
    ]


def test_revoking_a_direct_grant_says_what_still_opens_the_log(capsys) -> None:
    eve = UserFactory.create(username="eve")
    eve.groups.add(GroupFactory.create(name="Auditors"))
    call_command("audit", "grant", "--group", "Auditors")
    call_command("audit", "grant", "--user", "eve")
    capsys.readouterr()
    call_command("audit", "revoke", "--user", "eve")
    assert "They still read the audit log as: group Auditors." in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--user", "nobody"], "No user named 'nobody'"), (["--group", "Nobody"], "No group named 'Nobody'")],
)
def test_grant_names_an_unknown_user_or_group(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("audit", "grant", *args)
    assert not AuditEvent.objects.exists()
