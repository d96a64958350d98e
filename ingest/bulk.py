"""Actions on many documents at once: the portal's bulk delete, bulk re-index and retry.

Each id is checked on its own (``accounts.selectors.document_for``) and acted on by
the same service as a single document (``services.document_delete``,
``services.document_reprocess``), so it is audited the same way. An id that does
not exist and one the user may not see are skipped alike: the answer says how many
were acted on, never which hidden ones exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied

from assistant.accounts.models import Role
from assistant.accounts.selectors import document_for
from ingest import services
from ingest.models import IN_PROGRESS, Collection

# One request acts on at most this many documents (a page of the table is 50).
BULK_MAX = 500


@dataclass
class BulkOutcome:
    done: list[int] = field(default_factory=list)
    skipped: int = 0  # not found, not this user's, or in another collection
    busy: int = 0  # being processed right now: left to that run (re-index only)


def _documents(*, user: Any, collection: Collection, document_ids: Iterable[int]) -> Iterable[Any]:
    seen: set[int] = set()
    for document_id in list(document_ids)[:BULK_MAX]:
        if document_id in seen:
            continue
        seen.add(document_id)
        try:
            document = document_for(user=user, document_id=document_id, role=Role.WRITE)
        except PermissionDenied:
            yield None
            continue
        yield document if document.collection_id == collection.pk else None


def documents_delete_many(*, user: Any, collection: Collection, document_ids: Iterable[int]) -> BulkOutcome:
    """Delete the documents of ``collection`` among ``document_ids`` that ``user`` may change.

    Files found inside a deleted document go with it; their own ids, if listed, are skipped.
    """
    outcome = BulkOutcome()
    for document in _documents(user=user, collection=collection, document_ids=document_ids):
        if document is None:
            outcome.skipped += 1
            continue
        services.document_delete(document=document, user=user)
        outcome.done.append(document.pk)
    return outcome


def documents_reprocess_many(*, user: Any, collection: Collection, document_ids: Iterable[int]) -> BulkOutcome:
    """Queue again (re-index, or retry a failed file) the documents ``user`` may change.

    A document being processed right now is left to that run and counted as busy.
    """
    outcome = BulkOutcome()
    for document in _documents(user=user, collection=collection, document_ids=document_ids):
        if document is None:
            outcome.skipped += 1
        elif document.status in IN_PROGRESS:
            outcome.busy += 1
        else:
            services.document_reprocess(document=document, user=user)
            outcome.done.append(document.pk)
    return outcome
