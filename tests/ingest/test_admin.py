"""The Django admin changes a document's restriction only through ``document_restrict``.

Through the admin's own change form, the way an administrator would: the
restriction must reach the document's attachments and be audited, and a staff user
who does not manage the collection cannot change it there at all.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.audit.models import AuditEvent
from ingest.models import Document
from tests.factories import CollectionFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mail_with_attachment() -> tuple[Document, Document]:
    collection = CollectionFactory.create(name="HR")
    mail = Document.objects.create(collection=collection, name="offer.eml", file="a", content_hash="1" * 64)
    attachment = Document.objects.create(
        collection=collection, name="salary.pdf", file="b", content_hash="2" * 64, parent=mail
    )
    return mail, attachment


def _groups(document: Document) -> set[str]:
    return set(document.restricted_to_groups.values_list("name", flat=True))


def test_admin_restriction_reaches_attachments_and_is_audited(admin_client, mail_with_attachment) -> None:
    mail, attachment = mail_with_attachment
    board = GroupFactory.create(name="Board")
    response = admin_client.post(
        reverse("admin:ingest_document_change", args=[mail.pk]), {"restricted_to_groups": [board.pk], "_save": "Save"}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert _groups(mail) == {"Board"}
    assert _groups(attachment) == {"Board"}  # the attachment does not show what the mail hides
    (event,) = AuditEvent.objects.filter(action=AuditEvent.Action.DOCUMENT_RESTRICTED)
    assert event.details.pop("request_id")  # the admin request that made it (assistant.ops)
    assert event.details == {"groups": ["Board"], "documents": [mail.pk, attachment.pk]}
    assert event.actor_username == "admin"


def test_admin_save_without_a_change_records_nothing(admin_client, mail_with_attachment) -> None:
    mail, _ = mail_with_attachment
    admin_client.post(reverse("admin:ingest_document_change", args=[mail.pk]), {"_save": "Save"})
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DOCUMENT_RESTRICTED).exists()


def test_staff_who_do_not_manage_the_collection_cannot_restrict_in_the_admin(client, mail_with_attachment) -> None:
    mail, attachment = mail_with_attachment
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_document", "change_document"]))
    CollectionGrant.objects.create(collection=mail.collection, user=staff, role=Role.WRITE)  # reads, does not manage
    client.force_login(staff)
    board = GroupFactory.create(name="Board")
    url = reverse("admin:ingest_document_change", args=[mail.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"restricted_to_groups": [board.pk], "_save": "Save"})
    assert _groups(mail) == set()
    assert _groups(attachment) == set()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DOCUMENT_RESTRICTED).exists()


def test_admin_lists_show_only_what_the_staff_user_may_read(client) -> None:
    """A staff user with the admin's view permissions meets the same rule as everywhere else."""
    hr = CollectionFactory.create(name="HR")
    other = CollectionFactory.create(name="Other")
    board = GroupFactory.create(name="Board")
    Document.objects.create(collection=hr, name="handbook.md", file="h", content_hash="3" * 64)
    secret = Document.objects.create(collection=hr, name="merger-plan.pdf", file="m", content_hash="4" * 64)
    secret.restricted_to_groups.add(board)
    Document.objects.create(collection=other, name="other-notes.md", file="o", content_hash="5" * 64)
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_document", "view_collection"]))
    CollectionGrant.objects.create(collection=hr, user=staff, role=Role.READ)
    client.force_login(staff)

    documents = client.get(reverse("admin:ingest_document_changelist")).content.decode()
    assert "handbook.md" in documents
    assert "merger-plan.pdf" not in documents
    assert "other-notes.md" not in documents
    assert client.get(reverse("admin:ingest_document_change", args=[secret.pk])).status_code in (302, 404)
    collections = client.get(reverse("admin:ingest_collection_changelist")).content.decode()
    assert "HR" in collections
    assert "Other" not in collections

    staff.groups.add(board)  # the control: in the document's group, the name is there
    assert "merger-plan.pdf" in client.get(reverse("admin:ingest_document_changelist")).content.decode()


def test_admin_shows_a_staff_user_only_their_own_conversations(client, admin_user) -> None:
    from assistant.chat.models import Conversation

    collection = CollectionFactory.create(name="HR")
    staff = UserFactory.create(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename="view_conversation"))
    Conversation.objects.create(user=admin_user, collection=collection, title="Merger timeline for the board")
    Conversation.objects.create(user=staff, collection=collection, title="My leave question")
    client.force_login(staff)
    page = client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    assert "My leave question" in page
    assert "Merger timeline" not in page
    client.force_login(admin_user)  # the control: a superuser sees both
    assert "Merger timeline" in client.get(reverse("admin:chat_conversation_changelist")).content.decode()
