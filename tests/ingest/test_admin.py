"""The Django admin changes a document's restriction only through ``document_restrict``.

Through the admin's own change form, the way an administrator would: the
restriction must reach the document's attachments and be audited, and a staff user
who does not manage the collection cannot change it there at all.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

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
    client.force_login(staff)
    board = GroupFactory.create(name="Board")
    url = reverse("admin:ingest_document_change", args=[mail.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"restricted_to_groups": [board.pk], "_save": "Save"})
    assert _groups(mail) == set()
    assert _groups(attachment) == set()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.DOCUMENT_RESTRICTED).exists()
