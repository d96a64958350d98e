"""A request id follows a question from the web request to the LLM server, the audit log and the logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse
from prometheus_client import REGISTRY

from assistant.audit.models import AuditEvent
from assistant.chat import services
from assistant.ops.logs import ContextFilter, JsonFormatter
from tests.factories import CollectionFactory, DocumentFactory, UserFactory
from tests.ops.conftest import MODEL
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger's records as the JSON handler writes them (LOG_FORMAT=json)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_sane_request_id_is_kept_and_echoed(client) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="edge-7f3a9c21-01")
    assert response["X-Request-ID"] == "edge-7f3a9c21-01"


@pytest.mark.parametrize(
    "given", ["", "short", "has space in it", "x" * 200, "<script>alert(1)</script>", "a\r\nSet-Cookie"]
)
def test_anything_else_is_replaced_by_a_new_id(client, given) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID=given)
    assert response["X-Request-ID"] != given
    assert len(response["X-Request-ID"]) == 32


def test_log_lines_are_json_with_the_request_id(client, json_log) -> None:
    client.get("/healthz", HTTP_X_REQUEST_ID="trace-0001-abcd")
    logging.getLogger("tests.ops").error("outside any request", exc_info=ValueError("boom"))
    events = _events(json_log)
    request_line = next(e for e in events if e["logger"] == "assistant.requests")
    assert request_line["request_id"] == "trace-0001-abcd"
    assert (request_line["route"], request_line["status"], request_line["level"]) == ("healthz", 200, "INFO")
    outside = next(e for e in events if e["logger"] == "tests.ops")
    assert "request_id" not in outside  # the request's id did not leak past it
    assert "ValueError: boom" in outside["exc"]


@pytest.mark.django_db(transaction=True)
def test_a_question_carries_its_id_to_the_llm_server_and_the_audit_log(recording_llm, json_log) -> None:
    user = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create(name="Handbook")
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    conversation = services.conversation_start(user=user, collection=collection)

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    first_tokens = count("assistant_answer_first_token_seconds_count", model=MODEL)
    answered = count("assistant_questions_total", outcome="answered")
    embeds = count("assistant_retrieval_stage_seconds_count", stage="embed")
    loads = count("assistant_retrieval_stage_seconds_count", stage="load")

    async def ask() -> tuple[str, str]:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(
            reverse("chat:ask", args=[conversation.pk]),
            {"question": "What is the meal allowance abroad?"},
            headers={"X-Request-ID": "question-42-abcdef"},
        )
        assert isinstance(response, StreamingHttpResponse)
        body = b"".join([chunk async for chunk in response.streaming_content]).decode()
        return response["X-Request-ID"], body

    echoed, body = async_to_sync(ask)()
    assert echoed == "question-42-abcdef"
    assert '"event": "done"' in body or '"event":"done"' in body
    posts = [h for h in recording_llm.seen if h.get("Accept") == "text/event-stream"]
    assert posts and all(h.get("X-Request-ID") == "question-42-abcdef" for h in posts)
    audit = AuditEvent.objects.get(action=AuditEvent.Action.QUESTION_ANSWERED)
    assert audit.details["request_id"] == "question-42-abcdef"
    assert count("assistant_answer_first_token_seconds_count", model=MODEL) == first_tokens + 1
    assert count("assistant_questions_total", outcome="answered") == answered + 1
    assert count("assistant_retrieval_stage_seconds_count", stage="embed") > embeds
    assert count("assistant_retrieval_stage_seconds_count", stage="load") > loads
    assert count("assistant_answer_tokens_total", model=MODEL) >= 4
    ask_line = next(e for e in _events(json_log) if e.get("route") == "chat:ask")
    assert ask_line["request_id"] == "question-42-abcdef"
