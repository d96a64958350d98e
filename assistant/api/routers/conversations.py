"""Conversations, their messages, and feedback on answers."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Query, Router, Status

from assistant.api.auth import caller
from assistant.api.errors import ApiError, not_found
from assistant.api.lookups import collection_for, paginate
from assistant.api.schemas import (
    ConversationIn,
    ConversationOut,
    ConversationPage,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    MessagePage,
)
from assistant.chat import feedback, services
from assistant.chat.models import Conversation, Feedback, Message

router = Router(tags=["conversations"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}
LIMIT = Query(50, ge=1, le=200)
OFFSET = Query(0, ge=0)


def _conversation_out(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.pk,
        "collection_id": c.collection_id,
        "title": c.title,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def _message_out(m: Message) -> dict[str, Any]:
    return {
        "id": m.pk,
        "conversation_id": m.conversation_id,
        "role": m.role,
        "content": m.content,
        "model": m.model,
        "citations": m.citations,
        "error": m.error,
        "created_at": m.created_at,
    }


def _mine(request: HttpRequest, conversation_id: int) -> Conversation:
    try:
        return services.conversation_for(user=caller(request), conversation_id=conversation_id)
    except PermissionDenied as exc:
        raise not_found("conversation") from exc


@router.get("/conversations", response={200: ConversationPage, **ERRORS}, summary="Your conversations")
def conversations_list(
    request: HttpRequest, collection_id: int | None = None, limit: int = LIMIT, offset: int = OFFSET
) -> Any:
    """Your conversations on collections you may still read, most recent first."""
    user = caller(request)
    rows = Conversation.objects.filter(user=user, collection__in=services.readable_collections(user))
    if collection_id is not None:
        rows = rows.filter(collection_id=collection_id)
    rows = rows.order_by("-updated_at", "-id")
    return paginate(rows, limit=limit, offset=offset, convert=lambda page: [_conversation_out(c) for c in page])


@router.post("/conversations", response={201: ConversationOut, **ERRORS})
def conversations_create(request: HttpRequest, body: ConversationIn) -> Any:
    user = caller(request)
    collection = collection_for(user=user, collection_id=body.collection_id)
    conversation = services.conversation_start(user=user, collection=collection, title=body.title)
    return Status(201, _conversation_out(conversation))


@router.get("/conversations/{conversation_id}", response={200: ConversationOut, **ERRORS})
def conversations_get(request: HttpRequest, conversation_id: int) -> Any:
    return _conversation_out(_mine(request, conversation_id))


@router.get("/conversations/{conversation_id}/messages", response={200: MessagePage, **ERRORS})
def messages_list(request: HttpRequest, conversation_id: int, limit: int = LIMIT, offset: int = OFFSET) -> Any:
    """Questions and answers in order, answers with their citations."""
    conversation = _mine(request, conversation_id)
    rows = conversation.messages.order_by("created_at", "id")

    def shown(page: list[Message]) -> list[dict[str, Any]]:
        # Answers citing a document since restricted away from the caller are withheld.
        visible = services.conversation_messages(user=caller(request), conversation=conversation, messages=page)
        return [_message_out(m) for m in visible]

    return paginate(rows, limit=limit, offset=offset, convert=shown)


def _answer(request: HttpRequest, message_id: int) -> Message:
    try:
        return feedback.answer_for(user=caller(request), message_id=message_id)
    except PermissionDenied as exc:
        raise not_found("answer") from exc


def _feedback_out(f: Feedback) -> dict[str, Any]:
    return {"message_id": f.message_id, "rating": f.rating, "comment": f.comment, "updated_at": f.updated_at}


@router.put("/messages/{message_id}/feedback", response={200: FeedbackOut, **ERRORS}, tags=["feedback"])
def feedback_set(request: HttpRequest, message_id: int, body: FeedbackIn) -> Any:
    """Rate an answer: 1 (helpful) or -1 (not helpful), with an optional comment. Rating again replaces it."""
    message = _answer(request, message_id)
    try:
        saved = feedback.feedback_set(user=caller(request), message=message, rating=body.rating, comment=body.comment)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc
    return _feedback_out(saved)


@router.get("/messages/{message_id}/feedback", response={200: FeedbackOut, **ERRORS}, tags=["feedback"])
def feedback_get(request: HttpRequest, message_id: int) -> Any:
    message = _answer(request, message_id)
    found = Feedback.objects.filter(message=message, user=caller(request)).first()
    if found is None:
        raise not_found("feedback")
    return _feedback_out(found)


@router.delete("/messages/{message_id}/feedback", response={204: None, **ERRORS}, tags=["feedback"])
def feedback_delete(request: HttpRequest, message_id: int) -> Any:
    message = _answer(request, message_id)
    if not feedback.feedback_delete(user=caller(request), message=message):
        raise not_found("feedback")
    return Status(204, None)
