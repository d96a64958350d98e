"""A stopped answer is kept: what the asker saw is stored, marked as stopped.

The page stops an answer by closing its stream. Under ASGI the request's task is
cancelled; a consumer that stops reading closes the generator. Both are driven here
against a real HTTP server that streams two pieces and then holds the stream open,
so the stop lands mid-answer however fast the machine is.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from assistant.audit.models import AuditEvent
from assistant.chat import services
from assistant.chat.events import Token
from assistant.chat.llm import LLMClient
from assistant.chat.models import Message
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.scripted_llm import RELEASE, Quiet

pytestmark = pytest.mark.django_db
PIECES = ["The meal allowance ", "is 85 euros"]


class TwoThenStall(Quiet):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in PIECES:
            chunk = {"model": "scripted", "choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        RELEASE.wait(120)


@pytest.fixture
def conversation():
    collection = CollectionFactory.create(name="Handbook")
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    return services.conversation_start(user=None, collection=collection)


def _stored(conversation) -> Message:
    return Message.objects.get(conversation=conversation, role=Message.Role.ASSISTANT)


@pytest.mark.parametrize("http_server", [TwoThenStall], indirect=True)
@pytest.mark.parametrize("how", ["closed", "cancelled"])
def test_an_answer_stopped_mid_stream_is_stored_as_far_as_it_went(conversation, http_server, how) -> None:
    llm = LLMClient(base_url=http_server, model="scripted")
    seen: list[str] = []

    async def ask() -> None:
        stream = services.answer_stream(user=None, conversation_id=conversation.pk, question="Meals?", llm=llm)
        if how == "closed":
            async for event in stream:
                if isinstance(event, Token):
                    seen.append(event.text)
                    if len(seen) == len(PIECES):
                        break
            await stream.aclose()
            return
        both = asyncio.Event()

        async def read() -> None:
            async for event in stream:
                if isinstance(event, Token):
                    seen.append(event.text)
                    if len(seen) == len(PIECES):
                        both.set()

        task = asyncio.create_task(read())
        await both.wait()  # the server now holds the stream open: the task waits on it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(ask)()
    assert "".join(seen) == "".join(PIECES)
    message = _stored(conversation)
    assert message.content == "".join(PIECES)
    assert message.error == services.STOPPED
    assert message.chunk_ids  # the sources it was given stay with it
    event = AuditEvent.objects.get(action=AuditEvent.Action.QUESTION_ANSWERED)
    assert event.details["error"] == services.STOPPED and event.details["message_id"] == message.pk
