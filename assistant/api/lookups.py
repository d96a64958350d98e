"""Finding what a caller asked for, with the same permission rules as the browser.

Something the caller may not read answers exactly like something that does not
exist (404), so ids reveal nothing. Something they may read but not change
answers 403.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.db.models import QuerySet

from assistant.accounts.models import Role
from assistant.accounts.selectors import collection_roles, collections_with_role, read_scope, user_can
from assistant.api.errors import ApiError, not_found
from ingest.models import Collection, Document

T = TypeVar("T")


def collection_for(*, user: Any, collection_id: int, role: Role = Role.READ) -> Collection:
    collection = collections_with_role(user=user, role=Role.READ).filter(pk=collection_id).first()
    if collection is None:
        raise not_found("collection")
    if role != Role.READ and not user_can(user=user, collection=collection, role=role):
        raise ApiError(403, "forbidden", f"This needs the '{role}' role on the collection.")
    return collection


def hidden_documents(*, user: Any, collection: Collection) -> frozenset[int]:
    """Documents of the collection the caller may not see (per-document restrictions)."""
    return read_scope(user=user, collections=[collection]).hidden_document_ids


def document_for(*, user: Any, document_id: int, role: Role = Role.READ) -> Document:
    document = Document.objects.filter(pk=document_id).select_related("collection").first()
    if document is None:
        raise not_found("document")
    try:
        collection = collection_for(user=user, collection_id=document.collection_id)
    except ApiError as exc:
        raise not_found("document") from exc
    if document.pk in hidden_documents(user=user, collection=collection):
        raise not_found("document")
    if role != Role.READ and not user_can(user=user, collection=collection, role=role):
        raise ApiError(403, "forbidden", f"This needs the '{role}' role on the document's collection.")
    return document


def role_of(*, user: Any, collection_ids: Iterable[int]) -> dict[int, str]:
    """The caller's highest role on each of these (readable) collections."""
    return collection_roles(user=user, collection_ids=collection_ids)


def paginate(
    rows: QuerySet[Any], *, limit: int, offset: int, convert: Callable[[list[Any]], list[T]]
) -> dict[str, Any]:
    return {
        "total": rows.count(),
        "limit": limit,
        "offset": offset,
        "items": convert(list(rows[offset : offset + limit])),
    }
