"""The conversation list beside the chat: what it shows, renaming and deleting.

Only the user's own conversations, on collections (and documents) they may still
read, are listed or touched; someone else's conversation id answers as if it did
not exist.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import formats, timezone
from django.utils.translation import gettext

from assistant.accounts.selectors import documents_hidden_from, documents_visible_to
from assistant.chat.models import Conversation
from assistant.chat.services import conversation_for, readable_collections
from ingest.models import Document

SIDEBAR_MAX = 200
# The packaged demonstration model (``LLM_MODEL``'s default): small, for trying the product.
DEMO_MODEL = "smollm2-135m-instruct"
TITLE_MAX = 200


def conversations_of(*, user: Any, search: str = "") -> QuerySet[Conversation]:
    """The user's conversations on collections they may still read, newest first; ``search`` matches titles."""
    collections = readable_collections(user)
    found = Conversation.objects.filter(user=user, collection__in=collections).select_related("collection", "document")
    # A conversation on a document since hidden from the user is not listed either.
    hidden = documents_hidden_from(user=user, collection_ids=collections.values_list("pk", flat=True))
    found = found.exclude(document__in=hidden.values("pk"))
    if search.strip():
        found = found.filter(title__icontains=search.strip())
    return found.order_by("-updated_at", "-id")


@dataclass(frozen=True)
class Day:
    label: str
    conversations: list[Conversation]


def conversations_by_day(conversations: QuerySet[Conversation], *, today: dt.date | None = None) -> list[Day]:
    """Conversations grouped under "Today", "Yesterday", then their date (newest first)."""
    today = today or timezone.localdate()
    days: list[Day] = []
    for conversation in conversations[:SIDEBAR_MAX]:
        date = timezone.localdate(conversation.updated_at)
        if date == today:
            label = gettext("Today")
        elif date == today - dt.timedelta(days=1):
            label = gettext("Yesterday")
        else:
            label = formats.date_format(date, "j F Y")  # month names in the user's language
        if not days or days[-1].label != label:
            days.append(Day(label=label, conversations=[]))
        days[-1].conversations.append(conversation)
    return days


def conversation_rename(*, user: Any, conversation_id: int, title: str) -> Conversation:
    """Give one of the user's conversations a new title (1 to 200 characters)."""
    title = " ".join(title.split())
    if not title or len(title) > TITLE_MAX:
        raise ValueError(gettext("A title needs 1 to %(max)s characters.") % {"max": TITLE_MAX})
    conversation = conversation_for(user=user, conversation_id=conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title"])
    return conversation


def conversation_delete(*, user: Any, conversation_id: int) -> None:
    """Delete one of the user's conversations and its messages (the audit log keeps its record)."""
    conversation_for(user=user, conversation_id=conversation_id).delete()


def documents_pending(*, user: Any, conversation: Conversation) -> int:
    """Documents the user may see in the conversation's collection that are still being indexed."""
    documents = documents_visible_to(user=user, collection=conversation.collection)
    if conversation.document_id is not None:
        documents = documents.filter(pk=conversation.document_id)
    return documents.exclude(status__in=[Document.Status.READY, Document.Status.FAILED]).count()


def demo_model_in_use() -> bool:
    """The packaged demonstration model answers (no real model connected by an admin)."""
    return bool(settings.LLM_EMBEDDED or settings.LLM_MODEL == DEMO_MODEL)
