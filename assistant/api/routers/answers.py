"""Search (retrieval only) and questions (answers with citations, streamed or not)."""

import json
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, StreamingHttpResponse
from ninja import Router

from assistant.api.auth import caller
from assistant.api.errors import ApiError, not_found
from assistant.api.idempotent import IDEMPOTENCY_KEY, as_json, claim, replay
from assistant.api.lookups import collection_for
from assistant.api.schemas import AnswerOut, AskIn, ErrorOut, SearchIn, SearchOut
from assistant.chat import services
from assistant.chat.idempotency import idempotency_complete, idempotency_release
from assistant.chat.models import Conversation, IdempotencyKey

router = Router(tags=["answers"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


@router.post("/search", response={200: SearchOut, **ERRORS}, summary="Passages only, no generated answer")
def search(request: HttpRequest, body: SearchIn) -> Any:
    """The passages a question would be answered from, best first, with their scores."""
    user = caller(request)
    collection = collection_for(user=user, collection_id=body.collection_id)
    passages = services.passages_retrieve(user=user, collection=collection, query=body.query, k=body.k)
    return {
        "passages": [
            {
                "chunk_id": p.chunk_id,
                "document_id": p.document_id,
                "document": p.document_name,
                "page_start": p.page_start,
                "page_end": p.page_end,
                "heading": p.heading,
                "text": p.text,
                "score": p.score,
            }
            for p in passages
        ]
    }


def _conversation(user: Any, body: AskIn) -> Conversation:
    try:
        if body.conversation_id is not None:
            return services.conversation_for(user=user, conversation_id=body.conversation_id)
        collection = collection_for(user=user, collection_id=body.collection_id or 0)  # the schema requires one
        return services.conversation_start(user=user, collection=collection, title=body.question)
    except PermissionDenied as exc:
        raise not_found("conversation" if body.conversation_id is not None else "collection") from exc


def _fingerprint(body: AskIn) -> dict[str, Any]:
    return {"question": body.question, "collection_id": body.collection_id, "conversation_id": body.conversation_id}


async def _events(user: Any, conversation: Conversation, question: str) -> AsyncIterator[dict[str, Any]]:
    try:
        async for event in services.answer_stream(user=user, conversation_id=conversation.pk, question=question):
            if event["event"] == "sources":
                event = {**event, "conversation_id": conversation.pk}
            yield event
    except PermissionDenied as exc:  # access withdrawn between the lookup and the answer
        raise not_found("conversation") from exc


async def _collect(user: Any, conversation: Conversation, question: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"conversation_id": conversation.pk, "answer": "", "model": "", "citations": []}
    async for event in _events(user, conversation, question):
        if event["event"] == "sources":
            answer["citations"] = event["citations"]
            answer["pending_documents"] = event["pending_documents"]
        elif event["event"] == "token":
            answer["answer"] += event["text"]
        elif event["event"] == "done":
            answer["message_id"] = event["message_id"]
            answer["model"] = event["model"]
            # The stored answer: markers naming no source removed, sources marked cited.
            answer["answer"] = event.get("text", answer["answer"])
            answer["citations"] = event.get("citations", answer["citations"])
            answer["removed_citations"] = event.get("removed_citations", 0)
        elif event["event"] == "error":
            raise ApiError(502, "generation_failed", event["message"], message_id=event["message_id"])
    return answer


async def _start(request: HttpRequest, body: AskIn, key: str | None) -> tuple[Any, Conversation | None, Any]:
    """(user, conversation, idempotency record or stored response to replay)."""
    user = caller(request)
    record: Any = None
    if key is not None:
        claimed = await sync_to_async(claim)(user=user, key=key, scope="ask", request=_fingerprint(body))
        if claimed.replay:
            return user, None, claimed.record
        record = claimed.record
    try:
        conversation = await sync_to_async(_conversation)(user, body)
    except BaseException:
        if record is not None:
            await sync_to_async(idempotency_release)(record=record)
        raise
    return user, conversation, record


@router.post("/ask", response={200: AnswerOut, 502: ErrorOut, **ERRORS}, summary="Answer a question (whole)")
async def ask(request: HttpRequest, body: AskIn, idempotency_key: str | None = IDEMPOTENCY_KEY) -> Any:
    """Retrieve, generate and return the whole answer with its numbered citations.

    Give ``collection_id`` to start a conversation or ``conversation_id`` to go on
    with one of yours.
    """
    user, conversation, record = await _start(request, body, idempotency_key)
    if conversation is None:
        return replay(record, body=await sync_to_async(_as_seen_now)(user, record, body))
    try:
        answer = await _collect(user, conversation, body.question)
    except BaseException:
        if record is not None:
            await sync_to_async(idempotency_release)(record=record)
        raise
    if record is not None:
        await sync_to_async(idempotency_complete)(record=record, status_code=200, response=as_json(answer, AnswerOut))
    return answer


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['event']}\ndata: {json.dumps(event)}\n\n"


def _as_seen_now(user: Any, record: IdempotencyKey, body: AskIn) -> dict[str, Any]:
    """The stored answer re-checked against what the caller may read now.

    Refused as the same request made afresh would be when the collection or the
    conversation was taken away since; withheld when a cited document was hidden.
    """
    try:
        return services.answer_replay(user=user, answer=record.response or {})
    except PermissionDenied as exc:
        raise not_found("conversation" if body.conversation_id is not None else "collection") from exc


async def _replayed_events(stored: dict[str, Any]) -> AsyncIterator[str]:
    """The events of a stored answer: the same cleaned text and citations ``/ask`` replays."""
    yield _sse(
        {
            "event": "sources",
            "citations": stored.get("citations", []),
            "pending_documents": stored.get("pending_documents", 0),
            "conversation_id": stored.get("conversation_id"),
        }
    )
    yield _sse({"event": "token", "text": stored.get("answer", "")})
    yield _sse(
        {
            "event": "done",
            "message_id": stored.get("message_id"),
            "model": stored.get("model", ""),
            "text": stored.get("answer", ""),
            "citations": stored.get("citations", []),
            "removed_citations": stored.get("removed_citations", 0),
            "replayed": True,
        }
    )


STREAM_DOC = {
    "responses": {
        200: {
            "description": (
                "Server-sent events: `sources` (citations, conversation_id), `token` (text, many), "
                "then `done` (message_id, model) or `error` (message)."
            ),
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
}


@router.post(
    "/ask/stream", response={200: None, **ERRORS}, openapi_extra=STREAM_DOC, summary="Answer a question (streamed)"
)
async def ask_stream(request: HttpRequest, body: AskIn, idempotency_key: str | None = IDEMPOTENCY_KEY) -> Any:
    """The same answer as ``/ask``, streamed as server-sent events while it is generated."""
    user, conversation, record = await _start(request, body, idempotency_key)
    if conversation is None:
        stream: AsyncIterator[str] = _replayed_events(await sync_to_async(_as_seen_now)(user, record, body))
    else:
        stream = _stream(user, conversation, body.question, record)
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _stream(user: Any, conversation: Conversation, question: str, record: Any) -> AsyncIterator[str]:
    answer: dict[str, Any] = {"conversation_id": conversation.pk, "answer": "", "model": "", "citations": []}
    finished = False
    try:
        async for event in _events(user, conversation, question):
            if event["event"] == "sources":
                answer["citations"] = event["citations"]
                answer["pending_documents"] = event["pending_documents"]
            elif event["event"] == "token":
                answer["answer"] += event["text"]
            elif event["event"] == "done":
                # Stored as /ask stores it: the cleaned text, the citations marked cited.
                answer.update(
                    message_id=event["message_id"],
                    model=event["model"],
                    answer=event.get("text", answer["answer"]),
                    citations=event.get("citations", answer["citations"]),
                    removed_citations=event.get("removed_citations", 0),
                )
                if record is not None:
                    await sync_to_async(idempotency_complete)(
                        record=record, status_code=200, response=as_json(answer, AnswerOut)
                    )
                finished = True
            yield _sse(event)
    except ApiError as exc:
        yield _sse({"event": "error", "message": exc.message, "code": exc.code})
    finally:
        # A failed or abandoned stream gives the key up: a retry answers afresh.
        if record is not None and not finished:
            await sync_to_async(idempotency_release)(record=record)
