"""What each MCP tool and resource does, on Django's synchronous side.

Every call finds what it was asked for with the caller's own permissions (the
selectors the browser and the REST API use), calls the shared services, and
records itself in the audit log: who, which tool, which collection, and which
chunks it returned. Something the caller may not see is answered exactly like
something that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections, connection
from django.http import HttpRequest

from assistant.accounts.models import Role
from assistant.accounts.selectors import (
    NO_SUCH_DOCUMENT,
    collection_readable,
    collection_roles,
    collections_with_role,
    document_for,
    documents_visible_to,
)
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.chat import services
from assistant.chat.events import Answer
from assistant.chat.models import Conversation
from assistant.chat.retrieval import Passage
from ingest import selectors
from ingest.models import Collection, Document

NO_SUCH_COLLECTION = "This collection does not exist or you may not read it."
NO_SUCH_CONVERSATION = "This conversation does not exist or is not yours."
RESOURCES_MAX = 1000
T = TypeVar("T")


class NotFound(Exception):
    """Asked for something that does not exist or is hidden from the caller (one message for both)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, and through which door."""

    user: Any
    transport: str  # "http" or "stdio"
    token: str = ""  # the API token's public prefix (HTTP)
    request: HttpRequest | None = None  # carries the client address into the audit log


async def in_django(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` in Django's thread the way a request would run it.

    The MCP app is outside Django's request cycle, whose signals replace a connection
    that is past ``CONN_MAX_AGE`` or that the database dropped (a restart, a failover).
    Without that, the one thread ``sync_to_async`` runs these calls in would keep a dead
    connection and fail every request until the process restarts.
    """

    def call() -> T:
        if not connection.in_atomic_block:  # closing would break a caller's transaction (a test's)
            close_old_connections()
        return fn(*args, **kwargs)

    return await sync_to_async(call)()


def _audit(caller: Caller, action: str, *, collection: Any = None, target: Any = None, **details: Any) -> None:
    audit_record(
        action=action,
        actor=caller.user,
        collection=collection,
        target=target,
        details={"transport": caller.transport, "token": caller.token, **details},
        request=caller.request,
    )


def _tool_called(caller: Caller, tool: str, **kwargs: Any) -> None:
    _audit(caller, AuditEvent.Action.MCP_TOOL_CALLED, tool=tool, **kwargs)


def collection_of(caller: Caller, name_or_id: str | int) -> Collection:
    found = collection_readable(user=caller.user, name_or_id=name_or_id)
    if found is None:
        raise NotFound(NO_SUCH_COLLECTION)
    return found


def collections_list(caller: Caller) -> list[dict[str, Any]]:
    """The collections the caller may read, with their role and what they may see in each."""
    collections = list(collections_with_role(user=caller.user, role=Role.READ).order_by("name", "id"))
    roles = collection_roles(user=caller.user, collection_ids=[c.pk for c in collections])
    rows = []
    for c in collections:
        # Counted over the documents the caller may see, as every list and count is.
        summary = selectors.collection_summary(
            collection=c, documents=documents_visible_to(user=caller.user, collection=c)
        )
        rows.append(
            {
                "id": c.pk,
                "name": c.name,
                "description": c.description,
                "role": roles[c.pk],
                "documents": summary["total"],
                "ready": summary["ready"],
                "chunks": summary["chunks"],
            }
        )
    _tool_called(caller, "list_collections", collection_ids=[c.pk for c in collections])
    return rows


def search(caller: Caller, *, collection: str | int, query: str, k: int) -> tuple[Collection, list[dict[str, Any]]]:
    """The passages a question would be answered from, best first (no generation)."""
    found = collection_of(caller, collection)
    try:
        passages = services.passages_retrieve(user=caller.user, collection=found, query=query, k=k)
    except PermissionDenied as exc:  # access withdrawn since the lookup
        raise NotFound(NO_SUCH_COLLECTION) from exc
    results = [services.passage_found(p) for p in passages]
    # "question" is the key the deletion policy clears along with the person's name.
    _tool_called(caller, "search", collection=found, question=query, k=k, chunk_ids=[p.chunk_id for p in passages])
    return found, results


def documents_list(
    caller: Caller, *, collection: str | int, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """The collection's documents the caller may see, newest first, with their status."""
    found = collection_of(caller, collection)
    rows = selectors.collection_documents(
        collection=found, documents=documents_visible_to(user=caller.user, collection=found)
    )
    if status:
        rows = rows.filter(status=status)
    page = list(rows[offset : offset + limit])
    _tool_called(caller, "list_documents", collection=found, document_ids=[d.pk for d in page])
    return {
        "collection": {"id": found.pk, "name": found.name},
        "total": rows.count(),
        "offset": offset,
        "documents": [selectors.document_as_dict(d) for d in page],
    }


def _document(caller: Caller, document_id: int) -> Document:
    try:
        return document_for(user=caller.user, document_id=document_id)
    except PermissionDenied as exc:
        raise NotFound(NO_SUCH_DOCUMENT) from exc


def _passage_out(p: Passage) -> dict[str, Any]:
    return {"chunk_id": p.chunk_id, "page_start": p.page_start, "page_end": p.page_end, "heading": p.heading,
            "text": p.text}  # fmt: skip


def document_get(
    caller: Caller, *, document_id: int, page: int | None, from_chunk_id: int | None, to_chunk_id: int | None
) -> dict[str, Any]:
    """A document's metadata and, when asked, the text of one page or of a range of passages."""
    document = _document(caller, document_id)
    passages: list[Passage] = []
    if page is not None or from_chunk_id is not None or to_chunk_id is not None:
        chunk_ids = None
        if from_chunk_id is not None or to_chunk_id is not None:
            first = from_chunk_id if from_chunk_id is not None else to_chunk_id
            last = to_chunk_id if to_chunk_id is not None else from_chunk_id
            chunk_ids = (min(first or 0, last or 0), max(first or 0, last or 0))
        passages = services.document_passages(user=caller.user, document=document, page=page, chunk_ids=chunk_ids)
    _tool_called(
        caller, "get_document", collection=document.collection, target=document, page=page,
        chunk_ids=[p.chunk_id for p in passages],
    )  # fmt: skip
    return {
        "document": {**selectors.document_as_dict(document), "collection_id": document.collection_id},
        "collection": document.collection.name,
        "page": page,
        "passages": [_passage_out(p) for p in passages],
    }


def ask_conversation(
    caller: Caller, *, question: str, collection: str | int | None, conversation_id: int | None
) -> Conversation:
    """The conversation a question goes to: one of the caller's, or a new one on a collection."""
    if conversation_id is not None:
        try:
            return services.conversation_for(user=caller.user, conversation_id=conversation_id)
        except PermissionDenied as exc:
            raise NotFound(NO_SUCH_CONVERSATION) from exc
    if collection is None:
        raise ValueError("Give either a collection or a conversation_id.")
    try:
        return services.conversation_start(
            user=caller.user, collection=collection_of(caller, collection), title=question
        )
    except PermissionDenied as exc:
        raise NotFound(NO_SUCH_COLLECTION) from exc


def ask_audit(caller: Caller, *, conversation: Conversation, answer: Answer) -> None:
    """The tool call itself (the answer service has already recorded the question it answered)."""
    _tool_called(
        caller, "ask", collection=conversation.collection, conversation_id=conversation.pk,
        message_id=answer.message_id, chunk_ids=[c["chunk_id"] for c in answer.citations], error=answer.error,
    )  # fmt: skip


def readable_documents(caller: Caller) -> list[Document]:
    """Every ready document the caller may read, as resources (newest first per collection)."""
    documents: list[Document] = []
    for collection in collections_with_role(user=caller.user, role=Role.READ).order_by("name", "id"):
        visible = documents_visible_to(user=caller.user, collection=collection).filter(status=Document.Status.READY)
        documents += list(visible.select_related("collection").order_by("-created_at", "-id")[:RESOURCES_MAX])
        if len(documents) >= RESOURCES_MAX:
            break
    return documents[:RESOURCES_MAX]


def document_text(caller: Caller, *, document_id: int, page: int | None = None) -> str:
    """A document's text (or one page's) as the caller may read it, each page under a heading."""
    document = _document(caller, document_id)
    passages = services.document_passages(user=caller.user, document=document, page=page)
    _audit(
        caller, AuditEvent.Action.MCP_RESOURCE_READ, collection=document.collection, target=document, page=page,
        chunk_ids=[p.chunk_id for p in passages],
    )  # fmt: skip
    parts = [f"# {document.name}"] + ([f"## Page {page}"] if page is not None else [])
    shown_page: int | None = page
    for p in passages:
        if page is None and p.page_start is not None and p.page_start != shown_page:
            shown_page = p.page_start
            parts.append(f"## Page {shown_page}")
        parts.append(p.text)
    return "\n\n".join(parts) + "\n"
