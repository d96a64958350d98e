"""Question answering: retrieval and generation wired together in one place.

``answer_stream`` is the single path every surface uses (the chat page's event
stream, ``manage.py ask``, later the API): it checks permissions, retrieves, stores
the question, streams the model's answer and stores it with the model id the server
reported and the chunk ids it was given.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection

from assistant.accounts.selectors import collections_readable_by, read_scope
from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.models import Conversation, Message
from assistant.chat.prompts import build_messages, page_label
from assistant.chat.retrieval import Passage, build_retriever, is_low_relevance, relevant_passages
from ingest.models import Collection, Document

NOTHING_FOUND = "I could not find anything about this in the documents of this collection."


def readable_collections(user: Any) -> Any:
    """``user=None`` is an operator at the shell, who may read every collection."""
    return Collection.objects.all() if user is None else collections_readable_by(user)


def conversation_start(*, user: Any, collection: Collection, title: str = "") -> Conversation:
    """Open a conversation on a collection the user may read."""
    if not readable_collections(user).filter(pk=collection.pk).exists():
        raise PermissionDenied("You do not have access to this collection.")
    return Conversation.objects.create(user=user, collection=collection, title=title[:200])


def conversation_for(*, user: Any, conversation_id: int) -> Conversation:
    """A conversation of this user's on a collection they may still read, or PermissionDenied."""
    conversation = Conversation.objects.filter(pk=conversation_id, user=user).select_related("collection").first()
    if conversation is None or not readable_collections(user).filter(pk=conversation.collection_id).exists():
        raise PermissionDenied("This conversation does not exist or is not yours.")
    return conversation


def passages_retrieve(*, user: Any, collection: Collection, query: str, k: int) -> list[Passage]:
    """Top-k passages from one collection, refusing collections the user may not read."""
    if not readable_collections(user).filter(pk=collection.pk).exists():
        raise PermissionDenied("You do not have access to this collection.")
    scope = read_scope(user=user, collections=[collection])
    passages = build_retriever(settings.RETRIEVAL_MODE, scope=scope).retrieve(query, k=k)
    # A passage this far from the question would only tempt the model to answer from
    # its own memory: with none left, the answer says nothing was found.
    return relevant_passages(passages, floor=settings.RETRIEVAL_MIN_RELEVANCE)


def citation_for(number: int, passage: Passage) -> dict[str, Any]:
    return {
        "n": number,
        "document": passage.document_name,
        "document_id": passage.document_id,
        "page": passage.page_start,
        "page_end": passage.page_end,
        "page_label": page_label(passage.page_start, passage.page_end),
        "heading": passage.heading,
        "chunk_id": passage.chunk_id,
        "score": passage.score,
        "relevance": passage.relevance,
        "text": passage.text,
    }


@dataclass
class _Turn:
    conversation: Conversation
    passages: list[Passage]
    pending: int  # documents of the collection still being ingested
    low_relevance: bool = False  # the best passage is only weakly related to the question
    citations: list[dict[str, Any]] = field(default_factory=list)


def _prepare(*, user: Any, conversation_id: int, question: str, k: int) -> _Turn:
    conversation = conversation_for(user=user, conversation_id=conversation_id)
    passages = passages_retrieve(user=user, collection=conversation.collection, query=question, k=k)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question)
    if not conversation.title:
        conversation.title = question.strip()[:200]
        conversation.save(update_fields=["title", "updated_at"])
    pending = conversation.collection.documents.exclude(
        status__in=[Document.Status.READY, Document.Status.FAILED]
    ).count()
    turn = _Turn(
        conversation=conversation,
        passages=passages,
        pending=pending,
        low_relevance=is_low_relevance(passages, weak=settings.RETRIEVAL_WEAK_RELEVANCE),
    )
    turn.citations = [citation_for(n, p) for n, p in enumerate(passages, start=1)]
    return turn


def _release_connection() -> None:
    # Inside a transaction (a caller's atomic block, a test) closing would break it.
    if not connection.in_atomic_block:
        connection.close()


def _save_answer(*, turn: _Turn, text: str, model: str, error: str, latency_ms: int) -> Message:
    message = Message.objects.create(
        conversation=turn.conversation,
        role=Message.Role.ASSISTANT,
        content=text,
        model=model,
        chunk_ids=[p.chunk_id for p in turn.passages],
        citations=turn.citations,
        error=error,
        latency_ms=latency_ms,
    )
    Conversation.objects.filter(pk=turn.conversation.pk).update(updated_at=message.created_at)
    return message


async def answer_stream(
    *, user: Any, conversation_id: int, question: str, llm: LLMClient | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Answer a question as a stream of events.

    Events, in order: ``sources`` (the numbered citations, and ``low_relevance`` when
    the best of them is only weakly related to the question), ``token`` (answer text,
    many), then ``done`` (the stored message id and the model id) or ``error`` (a
    readable reason; the partial answer is still stored).
    """
    if not question.strip():
        raise ValueError("The question is empty.")
    started = time.monotonic()
    turn = await sync_to_async(_prepare)(
        user=user, conversation_id=conversation_id, question=question, k=settings.RETRIEVAL_TOP_K
    )
    yield {
        "event": "sources",
        "citations": turn.citations,
        "pending_documents": turn.pending,
        "low_relevance": turn.low_relevance,
    }
    # Generation can take minutes; a database connection is not held through it.
    await sync_to_async(_release_connection)()

    parts: list[str] = []
    model = ""
    error = ""
    if not turn.passages:
        parts.append(NOTHING_FOUND)
        yield {"event": "token", "text": NOTHING_FOUND}
    else:
        client = llm or LLMClient.from_settings()
        try:
            async for delta in client.stream_chat(
                build_messages(question, turn.passages),
                max_tokens=settings.LLM_MAX_TOKENS,
                temperature=settings.LLM_TEMPERATURE,
            ):
                model = delta.model
                parts.append(delta.text)
                yield {"event": "token", "text": delta.text}
        except LLMError as exc:
            error = str(exc)
    latency_ms = int((time.monotonic() - started) * 1000)
    message = await sync_to_async(_save_answer)(
        turn=turn, text="".join(parts), model=model, error=error, latency_ms=latency_ms
    )
    if error:
        yield {"event": "error", "message": error, "message_id": message.pk}
    else:
        yield {"event": "done", "message_id": message.pk, "model": model, "latency_ms": latency_ms}


@dataclass(frozen=True)
class Answer:
    text: str
    model: str
    citations: list[dict[str, Any]]
    error: str
    message_id: int | None


def answer_question(*, user: Any, collection: Collection, question: str, llm: LLMClient | None = None) -> Answer:
    """The same path as the chat page, collected into one result (for the shell and tests)."""
    conversation = conversation_start(user=user, collection=collection, title=question)

    async def collect() -> Answer:
        text: list[str] = []
        citations: list[dict[str, Any]] = []
        model = error = ""
        message_id = None
        async for event in answer_stream(user=user, conversation_id=conversation.pk, question=question, llm=llm):
            if event["event"] == "sources":
                citations = event["citations"]
            elif event["event"] == "token":
                text.append(event["text"])
            elif event["event"] == "done":
                model, message_id = event["model"], event["message_id"]
            elif event["event"] == "error":
                error, message_id = event["message"], event["message_id"]
        return Answer(text="".join(text), model=model, citations=citations, error=error, message_id=message_id)

    # async_to_sync runs the ORM calls above on this very thread (and connection).
    return async_to_sync(collect)()
