"""Deleting a user: their conversations go, their audit rows follow USER_DELETION_POLICY."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from assistant.audit.models import AuditEvent
from assistant.audit.services import UserDeletionRefused, audit_pseudonym, audit_record, user_data_delete
from assistant.chat.models import Conversation, Message
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


@pytest.fixture
def frank():
    """A user with a conversation, an answered question and a failed sign-in on record."""
    user = UserFactory.create(username="frank")
    collection = CollectionFactory.create(name="Payroll")
    conversation = Conversation.objects.create(user=user, collection=collection)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content="my salary?")
    answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="...")
    audit_record(
        action=Action.QUESTION_ANSWERED, actor=user, collection=collection, target=answer,
        details={"question": "my salary?", "chunk_ids": [7, 9], "model": "m", "message_id": answer.pk},
    )  # fmt: skip
    AuditEvent.objects.create(action=Action.USER_LOGIN, actor=user, actor_username="frank", ip="10.9.9.9")
    AuditEvent.objects.create(action=Action.USER_LOGIN_FAILED, details={"username": "frank", "locked_out": False})
    return user


def test_anonymize_deletes_messages_and_pseudonymizes_the_audit_rows(settings, frank) -> None:
    settings.USER_DELETION_POLICY = "anonymize"
    admin = UserFactory.create(username="root", is_superuser=True)
    user_id = frank.pk
    summary = user_data_delete(user=frank, actor=admin)
    pseudonym = audit_pseudonym(user_id=user_id)
    assert summary == {"username": pseudonym, "policy": "anonymize", "conversations": 1, "messages": 2}
    assert not User.objects.filter(pk=user_id).exists()
    assert not Conversation.objects.filter(user_id=user_id).exists()
    assert not Message.objects.filter(content="my salary?").exists()

    assert not AuditEvent.objects.filter(actor_username="frank").exists()
    assert "frank" not in str(list(AuditEvent.objects.values_list("details", flat=True)))
    answered = AuditEvent.objects.get(action=Action.QUESTION_ANSWERED)
    assert (answered.actor_id, answered.actor_username) == (None, pseudonym)
    assert answered.details["question"] is None
    assert answered.details["chunk_ids"] == [7, 9]  # what was retrieved stays on record
    assert answered.collection_name == "Payroll"
    login = AuditEvent.objects.get(action=Action.USER_LOGIN)
    assert (login.actor_username, login.ip) == (pseudonym, None)
    assert AuditEvent.objects.get(action=Action.USER_LOGIN_FAILED).details["username"] == pseudonym
    deleted = AuditEvent.objects.get(action=Action.USER_DATA_DELETED)
    assert deleted.actor_username == "root"
    assert deleted.details["username"] == pseudonym
    assert deleted.target_id == str(user_id)


def test_keep_policy_leaves_the_name_on_the_audit_rows(settings, frank) -> None:
    settings.USER_DELETION_POLICY = "keep"
    user_id = frank.pk
    user_data_delete(user=frank)
    assert not Message.objects.filter(conversation__user_id=user_id).exists()
    assert not Conversation.objects.filter(user_id=user_id).exists()
    answered = AuditEvent.objects.get(action=Action.QUESTION_ANSWERED)
    assert (answered.actor_id, answered.actor_username) == (None, "frank")
    assert answered.details["question"] == "my salary?"
    assert AuditEvent.objects.get(action=Action.USER_DATA_DELETED).details["username"] == "frank"


def test_the_policy_also_holds_when_the_user_is_deleted_elsewhere(settings, frank) -> None:
    settings.USER_DELETION_POLICY = "anonymize"
    pseudonym = audit_pseudonym(user_id=frank.pk)
    User.objects.filter(pk=frank.pk).delete()  # as the Django admin's bulk delete does
    assert set(AuditEvent.objects.filter(actor_id=None).values_list("actor_username", flat=True)) >= {pseudonym}
    assert not AuditEvent.objects.filter(actor_username="frank").exists()


def test_the_last_superuser_cannot_be_deleted() -> None:
    only = UserFactory.create(is_superuser=True)
    with pytest.raises(UserDeletionRefused):
        user_data_delete(user=only)
    assert User.objects.filter(pk=only.pk).exists()


def test_superuser_deletes_a_user_from_the_portal(client, settings, frank) -> None:
    settings.USER_DELETION_POLICY = "anonymize"
    client.force_login(UserFactory.create(username="root", is_superuser=True, is_staff=True))
    url = reverse("audit:user_delete")
    mismatch = client.post(url, {"username": "frank", "confirm": "fran"})
    assert mismatch.status_code == 200
    assert User.objects.filter(username="frank").exists()
    done = client.post(url, {"username": "frank", "confirm": "frank"})
    assert done.status_code == 302
    assert not User.objects.filter(username="frank").exists()
    assert AuditEvent.objects.get(action=Action.USER_DATA_DELETED).actor_username == "root"


def test_staff_who_are_not_superusers_cannot_delete_users(client, frank) -> None:
    client.force_login(UserFactory.create(is_staff=True))
    response = client.post(reverse("audit:user_delete"), {"username": "frank", "confirm": "frank"})
    assert response.status_code == 403
    assert User.objects.filter(username="frank").exists()
