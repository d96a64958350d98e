"""The answer service end to end in-process, with the real local LLM server."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from assistant.chat import services
from assistant.chat.llm import LLMClient
from assistant.chat.models import Message
from tests.factories import CollectionFactory, DocumentFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def handbook():
    collection = CollectionFactory.create(name="Handbook")
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    return collection


def test_answer_is_stored_with_model_and_the_chunks_it_was_given(llm, handbook) -> None:
    answer = services.answer_question(user=None, collection=handbook, question="What is the meal allowance abroad?")
    assert answer.error == ""
    assert answer.text.strip()
    assert answer.model == llm.model
    assert answer.citations[0]["document"] == "handbook.pdf"
    assert answer.citations[0]["page"] == 2
    assert answer.message_id is not None
    stored = Message.objects.get(pk=answer.message_id)
    assert stored.role == Message.Role.ASSISTANT
    assert stored.content == answer.text
    assert stored.model == llm.model
    assert stored.chunk_ids == [c["chunk_id"] for c in answer.citations]
    questions = Message.objects.filter(conversation=stored.conversation, role=Message.Role.USER)
    assert list(questions.values_list("content", flat=True)) == ["What is the meal allowance abroad?"]


def test_llm_down_gives_a_clear_error_and_keeps_the_sources(handbook) -> None:
    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    answer = services.answer_question(user=None, collection=handbook, question="meal allowance?", llm=dead)
    assert "not reachable" in answer.error
    assert answer.citations  # retrieval still worked and is shown
    assert answer.message_id is not None
    assert Message.objects.get(pk=answer.message_id).error == answer.error


def test_empty_collection_says_nothing_was_found_without_calling_the_llm() -> None:
    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    answer = services.answer_question(user=None, collection=CollectionFactory.create(), question="anything?", llm=dead)
    assert answer.text == services.NOTHING_FOUND
    assert answer.error == ""
    assert answer.citations == []


def test_a_user_cannot_open_a_conversation_on_an_unreadable_collection(handbook) -> None:
    with pytest.raises(PermissionDenied):
        services.conversation_start(user=UserFactory.create(), collection=handbook)


def test_a_user_cannot_continue_someone_elses_conversation(handbook) -> None:
    owner = UserFactory.create(is_superuser=True)
    conversation = services.conversation_start(user=owner, collection=handbook)
    intruder = UserFactory.create(is_superuser=True)
    with pytest.raises(PermissionDenied):
        services.conversation_for(user=intruder, conversation_id=conversation.pk)
