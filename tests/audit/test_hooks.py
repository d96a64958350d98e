"""Every audited action leaves exactly the event it should, with its facts."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.audit.models import AuditEvent
from assistant.chat import services as chat_services
from assistant.chat.llm import LLMClient
from assistant.chat.models import Message
from ingest import pipeline
from ingest import services as ingest_services
from tests.factories import CollectionFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_collection_and_document_lifecycle_is_audited() -> None:
    alice = UserFactory.create(username="alice", is_staff=True)
    collection = ingest_services.collection_create(name="Policies", user=alice)
    (created,) = events(Action.COLLECTION_CREATED)
    assert (created.actor_id, created.actor_username) == (alice.pk, "alice")
    assert (created.collection_id, created.collection_name) == (collection.pk, "Policies")

    first = ingest_services.document_upload(
        collection=collection, name="a.txt", fileobj=io.BytesIO(b"hello"), user=alice, enqueue=False
    )
    again = ingest_services.document_upload(
        collection=collection, name="copy.txt", fileobj=io.BytesIO(b"hello"), user=alice, enqueue=False
    )
    assert again.duplicate
    uploads = events(Action.DOCUMENT_UPLOADED)
    assert [(e.details["name"], e.details["duplicate"]) for e in uploads] == [("a.txt", False), ("copy.txt", True)]
    assert {(e.target_type, e.target_id) for e in uploads} == {("ingest.document", str(first.document.pk))}
    assert uploads[0].details["size"] == 5

    document_id = first.document.pk
    ingest_services.document_delete(document=first.document, user=alice)
    (deleted,) = events(Action.DOCUMENT_DELETED)
    assert deleted.details["name"] == "a.txt"
    assert deleted.target_id == str(document_id)
    assert deleted.actor_username == "alice"

    collection_id = collection.pk
    ingest_services.collection_delete(collection=collection, user=alice)
    (gone,) = events(Action.COLLECTION_DELETED)
    # The name outlives the collection.
    assert (gone.collection_id, gone.collection_name) == (collection_id, "Policies")


def test_a_failed_creation_leaves_no_event() -> None:
    ingest_services.collection_create(name="Once")
    with pytest.raises(ingest_services.CollectionNameTaken):
        ingest_services.collection_create(name="Once")
    assert len(events(Action.COLLECTION_CREATED)) == 1


def test_an_answer_records_question_chunks_model_and_latency() -> None:
    user = UserFactory.create(username="bob", is_superuser=True)
    collection = CollectionFactory.create(name="Empty")
    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    answer = chat_services.answer_question(user=user, collection=collection, question="Where is the manual?", llm=dead)
    (event,) = events(Action.QUESTION_ANSWERED)
    assert event.actor_username == "bob"
    assert (event.collection_id, event.collection_name) == (collection.pk, "Empty")
    assert event.target_type == "chat.message"
    assert event.details["message_id"] == answer.message_id
    assert event.details["question"] == "Where is the manual?"
    assert event.details["chunk_ids"] == []
    assert isinstance(event.details["latency_ms"], int)


def test_an_answer_with_passages_records_the_chunk_ids_it_was_given() -> None:
    collection = CollectionFactory.create(name="Handbook")
    upload = ingest_services.document_upload(
        collection=collection, name="handbook.pdf", fileobj=io.BytesIO(make_pdf(HANDBOOK_PAGES)), enqueue=False
    )
    pipeline.document_process(document_id=upload.document.pk)
    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    answer = chat_services.answer_question(user=None, collection=collection, question="meal allowance?", llm=dead)
    (event,) = events(Action.QUESTION_ANSWERED)
    assert answer.message_id is not None
    stored = Message.objects.get(pk=answer.message_id)
    assert event.details["chunk_ids"] == stored.chunk_ids
    assert event.details["chunk_ids"]
    assert event.details["error"] == stored.error != ""
    assert event.details["latency_ms"] == stored.latency_ms
    assert event.actor_id is None  # an operator at the shell


def test_sign_in_success_and_failure_are_audited(client) -> None:
    UserFactory.create(username="dave")
    client.post(reverse("login"), {"username": "dave", "password": "wrong"}, REMOTE_ADDR="10.1.2.3")
    response = client.post(reverse("login"), {"username": "dave", "password": "pw-for-tests"}, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    (failed,) = events(Action.USER_LOGIN_FAILED)
    assert failed.details["username"] == "dave"
    assert "wrong" not in str(failed.details)
    assert failed.ip == "10.1.2.3"
    assert failed.actor_id is None
    (login,) = events(Action.USER_LOGIN)
    assert login.actor_username == "dave"
    assert login.ip == "10.1.2.3"


def test_client_address_behind_proxies_is_the_hop_the_proxy_saw(client, settings) -> None:
    settings.PROXY_COUNT = 1
    UserFactory.create(username="erin")
    client.post(
        reverse("login"),
        {"username": "erin", "password": "wrong"},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.7",  # the first entry is the client's own claim
    )
    assert events(Action.USER_LOGIN_FAILED)[0].ip == "192.0.2.7"


def test_grants_made_and_removed_in_the_admin_are_audited(admin_client) -> None:
    collection = CollectionFactory.create(name="HR")
    group = GroupFactory.create(name="hr-team")
    response = admin_client.post(
        reverse("admin:accounts_collectiongrant_add"),
        {"collection": collection.pk, "group": group.pk, "user": "", "role": Role.WRITE},
    )
    assert response.status_code == 302, response.content[:2000]
    grant = CollectionGrant.objects.get(collection=collection, group=group)
    (granted,) = events(Action.PERMISSION_GRANTED)
    assert granted.details.pop("request_id")  # the admin request that made it (assistant.ops)
    assert granted.details == {"role": "write", "group": "hr-team", "user": None}
    assert granted.collection_name == "HR"
    assert granted.actor_username == "admin"

    response = admin_client.post(reverse("admin:accounts_collectiongrant_delete", args=[grant.pk]), {"post": "yes"})
    assert response.status_code == 302
    (revoked,) = events(Action.PERMISSION_REVOKED)
    assert revoked.target_id == str(grant.pk)
    assert revoked.details["group"] == "hr-team"


def test_unknown_actions_are_refused() -> None:
    from assistant.audit.services import audit_record

    with pytest.raises(ValueError, match="Unknown audit action"):
        audit_record(action="document.teleported")
