"""Search (retrieval only) and questions (answers with citations, streamed or not)."""

from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Router

from assistant.api.auth import caller
from assistant.api.errors import ApiError, not_found
from assistant.api.idempotent import IDEMPOTENCY_KEY, as_json, claim, replay
from assistant.api.lookups import collection_for
from assistant.api.schemas import AnswerOut, AskIn, ErrorOut, SearchIn, SearchOut
from assistant.chat import services
from assistant.chat.events import Answer, AnswerEvent, AnswerFold, Done, Failed, Sources, Token, answer_collect
from assistant.chat.idempotency import idempotency_complete, idempotency_release
from assistant.chat.models import Conversation, IdempotencyKey
from assistant.chat.sse import sse_event, sse_named, sse_response

router = Router(tags=["answers"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


@router.post("/search", response={200: SearchOut, **ERRORS}, summary="Passages only, no generated answer")
def search(request: HttpRequest, body: SearchIn) -> Any:
    """The passages a question would be answered from, best first, with their scores."""
    user = caller(request)
    collection = collection_for(user=user, collection_id=body.collection_id)
    passages = services.passages_retrieve(user=user, collection=collection, query=body.query, k=body.k)
    return {"passages": [services.passage_found(p) for p in passages]}


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


async def _events(user: Any, conversation: Conversation, question: str) -> AsyncIterator[AnswerEvent]:
    try:
        async for event in services.answer_stream(user=user, conversation_id=conversation.pk, question=question):
            yield event
    except PermissionDenied as exc:  # access withdrawn between the lookup and the answer
        raise not_found("conversation") from exc


def _body(conversation: Conversation, answer: Answer) -> dict[str, Any]:
    """An ``AnswerOut``: the stored answer (markers naming no source removed, sources marked cited)."""
    return {
        "conversation_id": conversation.pk,
        "answer": answer.text,
        "model": answer.model,
        "citations": answer.citations,
        "pending_documents": answer.pending_documents,
        "message_id": answer.message_id,
        "removed_citations": answer.removed_citations,
    }


async def _collect(user: Any, conversation: Conversation, question: str) -> dict[str, Any]:
    answer = await answer_collect(_events(user, conversation, question))
    if answer.error:
        raise ApiError(502, "generation_failed", answer.error, message_id=answer.message_id)
    return _body(conversation, answer)


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
    yield sse_named(
        Sources.name,
        {
            "citations": stored.get("citations", []),
            "pending_documents": stored.get("pending_documents", 0),
            "conversation_id": stored.get("conversation_id"),
        },
    )
    yield sse_event(Token(text=stored.get("answer", "")))
    yield sse_named(
        Done.name,
        {
            "message_id": stored.get("message_id"),
            "model": stored.get("model", ""),
            "text": stored.get("answer", ""),
            "citations": stored.get("citations", []),
            "removed_citations": stored.get("removed_citations", 0),
            "replayed": True,
        },
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
    return sse_response(stream)


async def _stream(user: Any, conversation: Conversation, question: str, record: Any) -> AsyncIterator[str]:
    fold = AnswerFold()
    finished = False
    try:
        async for event in _events(user, conversation, question):
            fold.add(event)
            if isinstance(event, Done):
                if record is not None:  # stored as /ask stores it
                    body = as_json(_body(conversation, fold.answer()), AnswerOut)
                    await sync_to_async(idempotency_complete)(record=record, status_code=200, response=body)
                finished = True
            # The sources also name the conversation, which a new one's caller does not know yet.
            extra = {"conversation_id": conversation.pk} if isinstance(event, Sources) else {}
            yield sse_event(event, **extra)
    except ApiError as exc:
        yield sse_named(Failed.name, {"message": exc.message, "code": exc.code})
    finally:
        # A failed or abandoned stream gives the key up: a retry answers afresh.
        if record is not None and not finished:
            await sync_to_async(idempotency_release)(record=record)
