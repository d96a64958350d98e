"""Ratings of answers, and their export as fine-tuning data.

The export rebuilds, for each rated answer, the exact conversation the model saw
(the system prompt and the question with its numbered sources, as stored with the
answer and shown to the user) followed by the answer: the chat format LoRA
fine-tuning tools (axolotl, trl's SFTTrainer) read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext

from assistant.accounts.selectors import cited_documents_hidden_from
from assistant.chat.models import Feedback, Message
from assistant.chat.prompts import build_messages
from assistant.chat.retrieval import Passage, passage_of
from assistant.chat.services import conversation_for, passages_redact
from ingest.models import Chunk

MAX_COMMENT_CHARS = 2000


def answer_for(*, user: Any, message_id: int) -> Message:
    """An answer in one of the user's own conversations, or PermissionDenied."""
    message = Message.objects.filter(pk=message_id, role=Message.Role.ASSISTANT).first()
    if message is None:
        raise PermissionDenied("This answer does not exist or is not yours.")
    conversation_for(user=user, conversation_id=message.conversation_id)
    return message


def feedback_set(*, user: Any, message: Message, rating: int, comment: str = "") -> Feedback:
    """Rate an answer (+1 or -1); rating again replaces the earlier rating."""
    if rating not in Feedback.Rating.values:
        raise ValueError(gettext("A rating is 1 (helpful) or -1 (not helpful)."))
    if len(comment) > MAX_COMMENT_CHARS:
        raise ValueError(gettext("A comment has at most %(max)s characters.") % {"max": MAX_COMMENT_CHARS})
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": comment.strip()}
    )
    return feedback


def feedback_delete(*, user: Any, message: Message) -> bool:
    deleted, _ = Feedback.objects.filter(message=message, user=user).delete()
    return bool(deleted)


def _question_of(message: Message) -> str:
    question = (
        Message.objects.filter(
            conversation_id=message.conversation_id, role=Message.Role.USER, created_at__lte=message.created_at
        )
        .exclude(pk__gt=message.pk)
        .order_by("-created_at", "-id")
        .values_list("content", flat=True)
        .first()
    )
    return question or ""


def _passages_of(message: Message) -> list[Passage]:
    """The passages the model was given, in prompt order, as the user was shown them.

    From the citations stored with the answer: their text is what the model and the
    user saw (redacted under ``PII_REDACTION=answer``), and it outlives the chunk when
    the document is replaced or deleted. A passage without a stored citation (none in
    answers stored by this version) is rebuilt from its chunk and redacted as
    retrieval would redact it now.
    """
    cited = {c.get("chunk_id"): c for c in message.citations if isinstance(c, dict)}
    missing = [chunk_id for chunk_id in message.chunk_ids if chunk_id not in cited]
    chunks = {c.pk: c for c in Chunk.objects.filter(pk__in=missing).select_related("document")}
    passages = []
    for chunk_id in message.chunk_ids:
        chunk = chunks.get(chunk_id)
        if chunk_id in cited:
            c = cited[chunk_id]
            passages.append(
                Passage(
                    chunk_id=chunk_id,
                    document_id=c.get("document_id") or 0,
                    document_name=c.get("document", ""),
                    collection_id=message.conversation.collection_id,
                    heading=c.get("heading", ""),
                    text=c.get("text", ""),
                    page_start=c.get("page"),
                    page_end=c.get("page_end"),
                    score=0.0,
                )
            )
        elif chunk is not None:
            passages.extend(passages_redact([passage_of(chunk, score=0.0)]))
    return passages


def _restricted(message: Message, passages: list[Passage]) -> bool:
    """Whether a passage comes from a document restricted to some groups (now, or when it was removed).

    Such answers are left out of the export: a model fine-tuned on a restricted text
    could repeat it to anyone, whatever the permissions of the person asking.
    """
    documents = {p.document_id for p in passages}
    return bool(
        cited_documents_hidden_from(
            user=AnonymousUser(), collection=message.conversation.collection, document_ids=documents
        )
    )


def feedback_export(*, rating: str = "all") -> Iterator[dict[str, Any]]:
    """Rated question/context/answer triples, one chat-format record each.

    ``rating`` is ``up``, ``down`` or ``all``. Answers that failed (an LLM error) or
    had no sources are left out: they teach a model nothing about the documents.
    The passages are the ones the user was shown (redacted when answers are), and
    answers drawn from a restricted document are left out (see ``_restricted``).
    """
    rows = Feedback.objects.select_related("message__conversation").order_by("pk")
    if rating == "up":
        rows = rows.filter(rating=Feedback.Rating.UP)
    elif rating == "down":
        rows = rows.filter(rating=Feedback.Rating.DOWN)
    elif rating != "all":
        raise ValueError("rating is one of up, down, all.")
    for feedback in rows.iterator(chunk_size=200):
        message = feedback.message
        if message.error or not message.chunk_ids:
            continue
        question = _question_of(message)
        passages = _passages_of(message)
        if not question or not passages or _restricted(message, passages):
            continue
        prompt = build_messages(question, passages)
        yield {
            "messages": [*prompt, {"role": "assistant", "content": message.content}],
            "rating": feedback.rating,
            "comment": feedback.comment,
            "message_id": message.pk,
            "model": message.model,
        }
