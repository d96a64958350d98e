"""One log event per question: timings, counts, the server and the outcome, under the request id, no text."""

from __future__ import annotations

import json
import logging

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse

from assistant.accounts.services import collection_grant
from assistant.audit.models import AuditEvent
from assistant.chat import services
from assistant.ops.logs import ContextFilter, JsonFormatter
from ingest.models import Chunk
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.ops.conftest import MODEL
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "What is the meal allowance abroad for the Zephyr desk?"
SECRET_NAME = "board-salaries-2026.md"
SECRET_TEXT = "The meal allowance abroad for board members is 400 euros, paid by Quillmark bank."


@pytest.fixture
def answers(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """The log as caplog keeps it, each record with the ids every production handler adds."""
    caplog.handler.addFilter(ContextFilter())
    caplog.set_level(logging.INFO, logger="assistant.answers")
    return caplog


@pytest.fixture
def handbook():
    """A collection with the handbook and a document restricted to the board; a member of it and an outsider."""
    admin = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create(name="Handbook")
    board = GroupFactory.create(name="Board")
    readers = GroupFactory.create(name="Readers")
    collection_grant(collection=collection, role="read", group=readers, actor=admin)
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    DocumentFactory.create(collection=collection, name=SECRET_NAME, content=SECRET_TEXT, groups=[board], processed=True)
    member = UserFactory.create(username="member")
    member.groups.add(readers, board)
    outsider = UserFactory.create(username="outsider")
    outsider.groups.add(readers)
    return collection, member, outsider


def ask(user, collection, request_id: str) -> str:
    """The question on the chat page (its event stream), as the browser asks it; the body streamed."""
    conversation = services.conversation_start(user=user, collection=collection)

    async def run() -> str:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(
            reverse("chat:ask", args=[conversation.pk]), {"question": QUESTION}, headers={"X-Request-ID": request_id}
        )
        assert isinstance(response, StreamingHttpResponse)
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    return async_to_sync(run)()


def summary(log: pytest.LogCaptureFixture, request_id: str) -> tuple[logging.LogRecord, dict]:
    """The one answer event of ``request_id``, and its JSON line as LOG_FORMAT=json writes it."""
    events = [r for r in log.records if r.name == "assistant.answers"]
    (record,) = [r for r in events if getattr(r, "request_id", None) == request_id]
    return record, json.loads(JsonFormatter().format(record))


def test_an_answer_leaves_one_event_with_the_audit_records_request_id_and_no_text(
    answers, handbook, recording_llm, settings
) -> None:
    collection, member, outsider = handbook
    body = ask(member, collection, "answer-log-member-01")
    assert '"event": "done"' in body or '"event":"done"' in body
    ask(outsider, collection, "answer-log-outsider-01")

    audit = {e.details["request_id"]: e for e in AuditEvent.objects.filter(action=AuditEvent.Action.QUESTION_ANSWERED)}
    secret_chunks = set(Chunk.objects.filter(document__name=SECRET_NAME).values_list("pk", flat=True))
    assert secret_chunks
    for request_id in ("answer-log-member-01", "answer-log-outsider-01"):
        record, event = summary(answers, request_id)
        assert event["request_id"] == request_id and request_id in audit  # the same id as its audit record
        assert event["message_id"] == audit[request_id].details["message_id"]
        assert event["event"] == "answer" and event["outcome"] == "answered" and record.levelname == "INFO"
        assert event["model"] == MODEL
        assert event["llm_server"] == settings.LLM_BASE_URL.rstrip("/")
        assert 0 <= event["first_token_ms"] <= event["latency_ms"]
        assert {"rewrite_ms", "retrieval_ms", "prompt_ms", "generation_ms"} <= set(event)
        assert {"embed", "load"} <= set(event["retrieval_stages_ms"])
        assert all(ms >= 0 for ms in event["retrieval_stages_ms"].values())
        line = JsonFormatter().format(record)
        for said in (QUESTION, "meal allowance", SECRET_NAME, "Quillmark", "handbook.pdf", "Meals abroad"):
            assert said not in line, (said, line)
        assert event["passages"] == len(audit[request_id].details["chunk_ids"]) >= 1
    # The member's answer drew on the restricted document as well; the outsider's could not.
    assert secret_chunks & set(audit["answer-log-member-01"].details["chunk_ids"])
    assert not secret_chunks & set(audit["answer-log-outsider-01"].details["chunk_ids"])


def test_a_model_server_that_is_down_is_an_error_outcome(answers, handbook, settings) -> None:
    collection, member, _ = handbook
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    settings.LLM_MODEL = MODEL
    ask(member, collection, "answer-log-down-0001")
    record, event = summary(answers, "answer-log-down-0001")
    assert (event["outcome"], record.levelname) == ("error", "WARNING")
    assert event["passages"] >= 1 and event["first_token_ms"] is None and event["llm_server"] is None
    line = JsonFormatter().format(record)
    assert "not reachable" not in line and "127.0.0.1" not in line  # the error's wording (an address) stays out


def test_nothing_relevant_is_its_own_outcome_and_asks_no_model(answers, recording_llm) -> None:
    user = UserFactory.create(is_superuser=True)
    empty = CollectionFactory.create(name="Empty")
    ask(user, empty, "answer-log-empty-0001")
    _, event = summary(answers, "answer-log-empty-0001")
    assert (event["outcome"], event["passages"], event["llm_server"]) == ("nothing_found", 0, None)
    assert not [h for h in recording_llm.seen if h.get("Accept") == "text/event-stream"]
