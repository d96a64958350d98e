"""Question answering: retrieval and generation wired together in one place.

``answer_stream`` is the single path every surface uses (the chat page's event
stream, ``manage.py ask``, the API and its OpenAI-compatible endpoint): it checks permissions, rewrites a
follow-up question into a standalone retrieval query, retrieves, stores the question,
streams the model's answer and stores it (citation markers naming no source removed)
with the model id the server reported and the chunk ids it was given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Q
from django.utils.translation import gettext, gettext_noop

from assistant.accounts.scope import Scope
from assistant.accounts.selectors import (
    cited_documents_hidden_from,
    collections_readable_by,
    document_for,
    read_scope,
)
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.chat.answer_log import answer_logged, answer_outcome
from assistant.chat.citations import citations_clean
from assistant.chat.events import Answer, AnswerEvent, Done, Failed, Reasoning, Sources, Token, answer_collect
from assistant.chat.links import web_link
from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.models import Conversation, Message
from assistant.chat.prompts import build_messages, page_label
from assistant.chat.reasoning import think_split
from assistant.chat.retrieval import (
    Passage,
    build_retriever,
    is_low_relevance,
    passages_current,
    passages_for,
    passages_merge,
    relevant_passages,
)
from assistant.chat.rewrite import Rewrite, Turn, query_rewrite, searched_queries
from assistant.connectors.selectors import source_links
from assistant.ops.metrics import observe_answer, stages_timed
from assistant.replica import replica_read, replica_release
from ingest.embedding_server import EmbeddingServerError
from ingest.index import Hit
from ingest.models import Chunk, Collection, Document
from ingest.redaction import StreamRedactor, pii_redact

logger = logging.getLogger(__name__)

# Shown (and stored) in the asker's language: gettext(NOTHING_FOUND) where it is used.
NOTHING_FOUND = gettext_noop("I could not find anything about this in the documents of this collection.")


def readable_collections(user: Any) -> Any:
    """``user=None`` is an operator at the shell, who may read every collection."""
    return Collection.objects.all() if user is None else collections_readable_by(user)


def conversation_start(
    *, user: Any, collection: Collection, title: str = "", document: Document | None = None
) -> Conversation:
    """Open a conversation on a collection the user may read, or on one document of it.

    A document conversation ("chat with this document") searches that document only;
    it needs the same right to see the document as opening it would.
    """
    if not readable_collections(user).filter(pk=collection.pk).exists():
        raise PermissionDenied("You do not have access to this collection.")
    if document is not None:
        document = document_for(user=user, document_id=document.pk)
        if document.collection_id != collection.pk:
            raise PermissionDenied("This document is not in this collection.")
    return Conversation.objects.create(user=user, collection=collection, title=title[:200], document=document)


def conversation_for(*, user: Any, conversation_id: int) -> Conversation:
    """A conversation of this user's on a collection (and document) they may still read, or PermissionDenied."""
    conversation = (
        Conversation.objects.filter(pk=conversation_id, user=user).select_related("collection", "document").first()
    )
    if conversation is None or not readable_collections(user).filter(pk=conversation.collection_id).exists():
        raise PermissionDenied("This conversation does not exist or is not yours.")
    if conversation.document_id is not None:
        try:
            document_for(user=user, document_id=conversation.document_id)
        except PermissionDenied:
            raise PermissionDenied("This conversation does not exist or is not yours.") from None
    return conversation


def passages_retrieve(
    *, user: Any, collection: Collection, query: str, k: int, document_id: int | None = None
) -> list[Passage]:
    """Top-k passages from one collection (or one ``document_id`` of it), refusing what the user may not read."""
    scope = _search_scope(user=user, collection=collection, document_id=document_id)
    return _passages_in(scope, user=user, query=query, k=k)


def passages_ranked(
    *, user: Any, collection: Collection, query: str, k: int, document_id: int | None = None
) -> list[Passage]:
    """The chat's retriever's top-k for ``user``, before the relevance floor and redaction.

    ``passages_retrieve`` is this through the floor; the retrieval-test page
    (``assistant.chat.retrieval_debug``) shows it whole, the floor marked.
    """
    scope = _search_scope(user=user, collection=collection, document_id=document_id)
    return _retrieved(scope, user=user, query=query, k=k)


def _search_scope(*, user: Any, collection: Collection, document_id: int | None) -> Scope:
    """What ``user`` may search in ``collection``, or PermissionDenied if they may not read it."""
    scope = read_scope(user=user, collections=[collection])
    if collection.pk not in scope.collection_ids:
        raise PermissionDenied("You do not have access to this collection.")
    return scope if document_id is None else scope.only_documents([document_id])


def _retrieved(scope: Scope, *, user: Any, query: str, k: int) -> list[Passage]:
    """The retriever's top-k over ``scope``, read from the replica when one may answer ``user``.

    The scope (who may see what) was read from the primary; so is the final check that
    each passage's document is still there and ready (``assistant.replica``).
    """
    retriever = build_retriever(settings.RETRIEVAL_MODE, scope=scope)
    passages = replica_read(lambda: retriever.retrieve(query, k=k), user_id=getattr(user, "pk", None))
    return passages_current(passages)


def _passages_in(scope: Scope, *, user: Any, query: str, k: int) -> list[Passage]:
    passages = _retrieved(scope, user=user, query=query, k=k)
    # A passage this far from the question would only tempt the model to answer from
    # its own memory: with none left, the answer says nothing was found.
    return passages_redact(relevant_passages(passages, floor=settings.RETRIEVAL_MIN_RELEVANCE))


def passages_redact(passages: list[Passage]) -> list[Passage]:
    """With ``PII_REDACTION=answer``, passages with personal data replaced by placeholders.

    Every surface gets its passages through ``passages_retrieve``, so what the model
    is given, the citations shown and the citations stored are all redacted here.
    """
    if settings.PII_REDACTION != "answer":
        return passages
    ner = settings.PII_REDACTION_NER
    return [
        dataclasses.replace(p, text=pii_redact(p.text, ner=ner), heading=pii_redact(p.heading, ner=ner))
        for p in passages
    ]


def answer_redactor() -> StreamRedactor | None:
    """With ``PII_REDACTION=answer``, the filter an answer's text streams through."""
    if settings.PII_REDACTION != "answer":
        return None
    return StreamRedactor(ner=settings.PII_REDACTION_NER)


NO_SUCH_PASSAGE = "This passage does not exist or you may not read it."


def passage_get(*, user: Any, chunk_id: int) -> Passage:
    """One passage by chunk id, if ``user`` may read it right now (the same check as retrieval).

    Raises ``PermissionDenied`` with the same message whether the chunk does not
    exist, is in a collection the user may not read, or belongs to a document hidden
    from them, so a guessed id reveals nothing. ``score`` is 0: nothing was ranked.
    """
    collection_id = Chunk.objects.filter(pk=chunk_id).values_list("collection_id", flat=True).first()
    if collection_id is None:
        raise PermissionDenied(NO_SUCH_PASSAGE)
    scope = read_scope(user=user, collections=list(Collection.objects.filter(pk=collection_id)))
    found = passages_for([Hit(chunk_id=chunk_id, score=0.0)], scope=scope)
    if not found:
        raise PermissionDenied(NO_SUCH_PASSAGE)
    return passages_redact(found)[0]


def passage_found(passage: Passage) -> dict[str, Any]:
    """A passage as search results show it, on every surface that searches (API, MCP)."""
    return {
        "chunk_id": passage.chunk_id,
        "document_id": passage.document_id,
        "document": passage.document_name,
        "page_start": passage.page_start,
        "page_end": passage.page_end,
        "heading": passage.heading,
        "text": passage.text,
        "score": passage.score,
    }


DOCUMENT_PASSAGES_MAX = 2000


def document_passages(
    *,
    user: Any,
    document: Document,
    page: int | None = None,
    chunk_ids: tuple[int, int] | None = None,
    limit: int = DOCUMENT_PASSAGES_MAX,
) -> list[Passage]:
    """A document's text as ``user`` may read it now, passage by passage in reading order.

    All of it, one ``page``'s passages (those whose page range covers it; a text
    without page breaks is page 1), or the
    passages whose chunk ids lie in ``chunk_ids`` (inclusive). Each goes through the
    same check and redaction as a retrieved passage, so a document hidden from the
    user (or not ready) gives nothing, whoever found it first.
    """
    chunks = Chunk.objects.filter(document_id=document.pk)
    if page is not None:
        on_page = Q(page_start__lte=page, page_end__gte=page) | Q(page_start=page) | Q(page_start=None, page_end=page)
        if page == 1:  # a text without page breaks is one page
            on_page |= Q(page_start=None, page_end=None)
        chunks = chunks.filter(on_page)
    if chunk_ids is not None:
        chunks = chunks.filter(pk__gte=chunk_ids[0], pk__lte=chunk_ids[1])
    ids = list(chunks.order_by("ordinal").values_list("pk", flat=True)[:limit])
    scope = read_scope(user=user, collections=list(Collection.objects.filter(pk=document.collection_id)))
    return passages_redact(passages_for([Hit(chunk_id=pk, score=0.0) for pk in ids], scope=scope))


STOPPED = gettext_noop("Stopped before the answer was complete.")
WITHHELD = gettext_noop("This answer drew on a document you may no longer see, so it is not shown.")


def conversation_messages(
    *, user: Any, conversation: Conversation, messages: Iterable[Message] | None = None
) -> list[Message]:
    """A conversation's messages as ``user`` may see them now.

    An answer that cited a document since restricted away from the user is shown
    as withheld (text and citations), so a restriction also covers what was said
    before it; nothing stored is changed, and lifting the restriction shows it again.
    It stays withheld when that document is later replaced or deleted.
    """
    shown = list(conversation.messages.all() if messages is None else messages)
    cited = {c.get("document_id") for m in shown for c in (m.citations or [])}
    if not cited:
        return shown
    hidden = cited_documents_hidden_from(user=user, collection=conversation.collection, document_ids=cited)
    for message in shown:
        if any(c.get("document_id") in hidden for c in (message.citations or [])):
            message.content = gettext(WITHHELD)
            message.citations = []
            message.chunk_ids = []
    return shown


def answer_replay(*, user: Any, answer: dict[str, Any]) -> dict[str, Any]:
    """A stored answer (replayed for an ``Idempotency-Key``) as ``user`` may see it now.

    The same rules as for a fresh question and for the conversation's history:
    ``PermissionDenied`` when the conversation is no longer theirs to read, and the
    text and citations withheld when a document it cited is now hidden from them.
    """
    conversation = conversation_for(user=user, conversation_id=int(answer.get("conversation_id") or 0))
    cited = {c.get("document_id") for c in answer.get("citations") or [] if isinstance(c, dict)}
    if cited_documents_hidden_from(user=user, collection=conversation.collection, document_ids=cited):
        return {**answer, "answer": gettext(WITHHELD), "citations": [], "removed_citations": 0}
    return answer


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
    retrieval_ms: int = 0
    error: str = ""  # retrieval could not run (the embedding server is down): the answer's error
    stages: dict[str, float] = field(default_factory=dict)  # seconds per retrieval stage (embed, vector, ...)


def _history(*, user: Any, conversation_id: int) -> tuple[Conversation, list[Turn]]:
    """The conversation, and its earlier turns, oldest first, as the user may see them now.

    An answer withheld because a document it cited was since hidden from the user is
    never given back to the model to rewrite a follow-up with.
    """
    conversation = conversation_for(user=user, conversation_id=conversation_id)
    turns = [Turn(role=m.role, text=m.content) for m in conversation_messages(user=user, conversation=conversation)]
    return conversation, turns


def _prepare(*, user: Any, conversation: Conversation, question: str, query: str, k: int) -> _Turn:
    """Retrieval for one question, and the question stored.

    ``conversation`` was checked by ``_history`` just before; whether the user may still
    read its collection is asked again here, by the search scope itself.
    """
    searching = time.monotonic()
    scope = _search_scope(user=user, collection=conversation.collection, document_id=conversation.document_id)
    # A rewritten follow-up is searched beside the question as asked, each through the
    # same floor: a rewrite that went wrong can add weak passages, never take away the
    # question's own, and the low-relevance warning sees every passage given.
    searched = searched_queries(question=question, query=query)
    error = ""
    with stages_timed() as stages:
        try:
            passages = passages_merge(*(_passages_in(scope, user=user, query=text, k=k) for text in searched), k=k)
        except EmbeddingServerError as exc:
            # No passages to answer from: the question is stored with this as its answer's error.
            logger.warning("Retrieval failed: %s", exc)
            passages, error = [], gettext("The question could not be searched: %(reason)s") % {"reason": exc}
    retrieval_ms = _ms_since(searching)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=question, retrieval_query=query)
    if not conversation.title:
        conversation.title = question.strip()[:200]
        conversation.save(update_fields=["title", "updated_at"])
    turn = _Turn(
        conversation=conversation,
        passages=passages,
        # Counted among the documents this user may see: a count must not reveal hidden ones.
        pending=scope.documents_in_progress(),
        low_relevance=is_low_relevance(passages, weak=settings.RETRIEVAL_WEAK_RELEVANCE),
        retrieval_ms=retrieval_ms,
        error=error,
        stages=stages,
    )
    turn.citations = [citation_for(n, p) for n, p in enumerate(passages, start=1)]
    # Where a connector found each document (a path, a URL): "open in source". A web
    # address that may be opened as a link also goes as source_url, so the chat page's
    # script never decides for itself what is safe to open.
    links = source_links(document_ids={p.document_id for p in passages})
    for citation in turn.citations:
        if link := links.get(citation["document_id"]):
            citation["source_link"] = link
            if url := web_link(link):
                citation["source_url"] = url
    return turn


def conversation_drop_last_turn(*, user: Any, conversation_id: int) -> None:
    """Regenerate or edit-and-resend: the last question and the answers after it go.

    The audit log keeps what was asked and answered; only the conversation forgets it.
    """
    conversation = conversation_for(user=user, conversation_id=conversation_id)
    last = conversation.messages.filter(role=Message.Role.USER).order_by("-created_at", "-id").first()
    if last is not None:
        conversation.messages.filter(id__gte=last.pk).delete()


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _release_connection() -> None:
    # Inside a transaction (a caller's atomic block, a test) closing would break it.
    if not connection.in_atomic_block:
        connection.close()
        replica_release()


def _save_answer(
    *,
    user: Any,
    question: str,
    turn: _Turn,
    text: str,
    citations: list[dict[str, Any]],
    removed: int,
    model: str,
    error: str,
    latency_ms: int,
    reasoning: str = "",
    first_token_ms: int | None = None,
    timings: dict[str, int] | None = None,
) -> Message:
    message = Message.objects.create(
        conversation=turn.conversation,
        role=Message.Role.ASSISTANT,
        content=text,
        model=model,
        chunk_ids=[p.chunk_id for p in turn.passages],
        citations=citations,
        removed_citations=removed,
        error=error,
        latency_ms=latency_ms,
        reasoning=reasoning,
        first_token_ms=first_token_ms,
        timings=timings or {},
    )
    Conversation.objects.filter(pk=turn.conversation.pk).update(updated_at=message.created_at)
    _audit_answer(user=user, turn=turn, question=question, message=message)
    return message


def _audit_answer(*, user: Any, turn: _Turn, question: str, message: Message) -> None:
    audit_record(
        action=AuditEvent.Action.QUESTION_ANSWERED,
        actor=user,
        collection=turn.conversation.collection,
        target=message,
        details={
            "question": question,
            "chunk_ids": message.chunk_ids,
            "model": message.model,
            "latency_ms": message.latency_ms,
            "message_id": message.pk,
            "conversation_id": turn.conversation.pk,
            "error": message.error,
        },
    )


async def answer_stream(
    *, user: Any, conversation_id: int, question: str, llm: LLMClient | None = None, replace_last: bool = False
) -> AsyncGenerator[AnswerEvent, None]:
    """Answer a question as a stream of events (``assistant.chat.events``).

    Events, in order: ``Sources`` (the numbered citations, the query retrieval
    searched for, and ``low_relevance`` when the best of them is only weakly related
    to the question), ``Token`` (answer text as the model streams it, many), then
    ``Done`` or ``Failed`` (a readable reason; the partial answer is still stored).
    Both end events carry the stored answer: ``text`` with citation markers naming
    no source removed (``removed_citations`` of them; the page replaces the streamed
    text with it) and ``citations``, each marked ``cited`` or not. A reasoning
    model's thinking streams as ``Reasoning`` events, apart from the answer.

    ``replace_last``: the conversation's last question and its answer are dropped
    first (regenerate, or edit and resend the last question).
    """
    if not question.strip():
        raise ValueError("The question is empty.")
    started = time.monotonic()
    client = llm or LLMClient.from_settings()
    if replace_last:
        await sync_to_async(conversation_drop_last_turn)(user=user, conversation_id=conversation_id)
    conversation, history = await sync_to_async(_history)(user=user, conversation_id=conversation_id)
    if any(t.role == Message.Role.USER for t in history) and settings.QUERY_REWRITE_TIMEOUT_S > 0:
        # A follow-up is rewritten by the model first: no database connection waits on it.
        await sync_to_async(_release_connection)()
    rewriting = time.monotonic()
    rewrite: Rewrite = await query_rewrite(
        history=history, question=question, llm=client, timeout_s=settings.QUERY_REWRITE_TIMEOUT_S
    )
    # Where an answer's time went, stored with it (the dashboard and bench/chat_latency.py read it).
    timings = {"rewrite_ms": _ms_since(rewriting)}
    turn = await sync_to_async(_prepare)(
        user=user, conversation=conversation, question=question, query=rewrite.query, k=settings.RETRIEVAL_TOP_K
    )
    yield Sources(
        citations=turn.citations,
        pending_documents=turn.pending,
        query=rewrite.query,
        query_rewrite=rewrite.method,
        low_relevance=turn.low_relevance,
        searched=searched_queries(question=question, query=rewrite.query),
    )
    # Generation can take minutes; a database connection is not held through it.
    await sync_to_async(_release_connection)()
    timings["retrieval_ms"] = turn.retrieval_ms

    parts: list[str] = []
    thinking: list[str] = []
    model = ""
    server = ""  # the LLM server that answered
    error = ""
    stopped: BaseException | None = None
    first_token_ms: int | None = None
    if turn.error:
        error = turn.error
    elif not turn.passages:
        nothing = gettext(NOTHING_FOUND)
        parts.append(nothing)
        first_token_ms = _ms_since(started)
        yield Token(text=nothing)
    else:
        # The model only saw redacted passages, but it may still write personal data
        # (from the question, or made up): the answer is redacted as it streams.
        redactor = answer_redactor()
        building = time.monotonic()
        prompt = build_messages(question, turn.passages)
        timings["prompt_ms"] = _ms_since(building)
        asking = time.monotonic()
        try:
            async for delta in client.stream_chat(
                prompt, max_tokens=settings.LLM_MAX_TOKENS, temperature=settings.LLM_TEMPERATURE
            ):
                model = delta.model
                server = delta.server or server
                if first_token_ms is None and (delta.reasoning or delta.text):
                    # The first text the model sends, thinking included: the asker sees it move.
                    first_token_ms = _ms_since(started)
                    timings["model_first_token_ms"] = _ms_since(asking)
                if delta.reasoning:
                    thinking.append(delta.reasoning)
                    yield Reasoning(text=delta.reasoning)
                text = redactor.feed(delta.text) if redactor else delta.text
                if text:
                    parts.append(text)
                    yield Token(text=text)
        except LLMError as exc:
            error = str(exc)
        except (asyncio.CancelledError, GeneratorExit) as exc:
            # The asker stopped the answer (the stream was closed or its request
            # cancelled): what was shown so far is kept, marked as stopped.
            stopped = exc
            error = gettext(STOPPED)
        timings["generation_ms"] = _ms_since(asking)
        if redactor and (rest := redactor.close()):
            parts.append(rest)
            if stopped is None:
                yield Token(text=rest)
    latency_ms = _ms_since(started)
    observe_answer(
        model=model or client.model,
        first_token_s=None if first_token_ms is None else first_token_ms / 1000,
        total_s=latency_ms / 1000,
        tokens=len(parts),
        error=bool(error),
        nothing_found=not turn.passages,
    )
    # A model whose template opened <think> in the prompt closes it in the answer:
    # only the end of the stream tells, and the stored answer (which replaces the
    # streamed text) leaves the thinking out.
    split = think_split("".join(parts))
    reasoning = "".join(thinking) + split.reasoning
    cleaned = citations_clean(split.answer, sources=len(turn.citations))
    citations = [{**c, "cited": c["n"] in cleaned.cited} for c in turn.citations]
    message = await sync_to_async(_save_answer)(
        user=user,
        question=question,
        turn=turn,
        text=cleaned.text,
        citations=citations,
        removed=cleaned.removed,
        model=model,
        error=error,
        latency_ms=latency_ms,
        reasoning=reasoning,
        first_token_ms=first_token_ms,
        timings=timings,
    )
    answer_logged(
        outcome=answer_outcome(error=bool(error), stopped=stopped is not None, nothing_found=not turn.passages),
        message_id=message.pk,
        conversation_id=turn.conversation.pk,
        collection_id=turn.conversation.collection_id,
        passages=len(turn.passages),
        model=model,
        server=server,
        first_token_ms=first_token_ms,
        latency_ms=latency_ms,
        tokens=len(parts),
        timings=timings,
        stages=turn.stages,
    )
    if stopped is not None:
        raise stopped  # nothing more may be sent on a closed stream
    if error:
        yield Failed(
            message=error,
            message_id=message.pk,
            text=cleaned.text,
            citations=citations,
            removed_citations=cleaned.removed,
        )
    else:
        yield Done(
            message_id=message.pk,
            model=model,
            latency_ms=latency_ms,
            text=cleaned.text,
            citations=citations,
            removed_citations=cleaned.removed,
        )


def answer_question(
    *,
    user: Any,
    collection: Collection,
    question: str,
    llm: LLMClient | None = None,
    conversation: Conversation | None = None,
) -> Answer:
    """The same path as the chat page, collected into one result (for the shell and tests).

    A new conversation is started unless ``conversation`` is given (a follow-up).
    """
    if conversation is None:
        conversation = conversation_start(user=user, collection=collection, title=question)
    stream = answer_stream(user=user, conversation_id=conversation.pk, question=question, llm=llm)
    # async_to_sync runs the ORM calls of the stream on this very thread (and connection).
    return async_to_sync(answer_collect)(stream)
