"""The retrieval test: one question through the dense, lexical and chat retrievers, as one user.

A collection's manager asks "what would this person's question find?" and sees three
ranked lists side by side: the dense (FAISS cosine) and lexical (BM25) searches on their
own, and the chat's own retriever (``RETRIEVAL_MODE``: hybrid fusion by default, a
cross-encoder rerank when configured) through ``services.passages_ranked``, the very
call the chat makes, so that column is what the chat would retrieve. Every passage
carries its relevance and whether it falls below the floor (``RETRIEVAL_MIN_RELEVANCE``):
those the chat never gives the model.

The searches run with the chosen user's permissions (``read_scope`` of that user): a
document restricted away from them is in none of the columns. Viewing as someone is
seeing what they may read, so every test is written to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied

from assistant.accounts.models import Role
from assistant.accounts.selectors import collection_readers, read_scope, user_can
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from assistant.chat.retrieval import Passage, build_retriever, is_low_relevance, relevant_passages
from assistant.chat.services import passages_ranked, passages_redact
from ingest.models import Collection

QUESTION_MAX = 4000


@dataclass(frozen=True)
class Ranked:
    rank: int
    passage: Passage
    # Relevance under RETRIEVAL_MIN_RELEVANCE: the chat would not give it to the model.
    below_floor: bool


@dataclass(frozen=True)
class Column:
    kind: str  # "dense", "lexical" or "chat"
    retriever: str  # the retriever's name: dense, lexical, hybrid, rerank
    ranked: list[Ranked]


@dataclass(frozen=True)
class Comparison:
    question: str
    as_user: Any
    k: int
    floor: float
    weak: float
    columns: list[Column]
    # What the chat would do with its column: the passages it gives the model, and
    # whether it would show its low-relevance warning.
    given: list[Passage]
    low_relevance: bool


def _ranked(passages: list[Passage], *, floor: float) -> list[Ranked]:
    kept = {p.chunk_id for p in relevant_passages(passages, floor=floor)}
    return [Ranked(rank=n, passage=p, below_floor=p.chunk_id not in kept) for n, p in enumerate(passages, start=1)]


def retrieval_test(
    *, viewer: Any, as_user: Any, collection: Collection, question: str, request: Any = None
) -> Comparison:
    """The three rankings of ``question`` in ``collection`` as ``as_user`` would get them.

    ``viewer`` must manage the collection, ``as_user`` must be one of its readers
    (``collection_readers``); otherwise ``PermissionDenied``. Recorded in the audit log.
    """
    if not user_can(user=viewer, collection=collection, role=Role.MANAGE):
        raise PermissionDenied("You do not manage this collection.")
    if not collection_readers(collection=collection).filter(pk=as_user.pk).exists():
        raise PermissionDenied("This user may not read this collection.")
    question = question.strip()[:QUESTION_MAX]
    k = settings.RETRIEVAL_TOP_K
    floor = settings.RETRIEVAL_MIN_RELEVANCE
    scope = read_scope(user=as_user, collections=[collection])
    chat = passages_redact(passages_ranked(user=as_user, collection=collection, query=question, k=k))
    columns = [
        Column(
            kind=kind,
            retriever=kind,
            ranked=_ranked(passages_redact(build_retriever(kind, scope=scope).retrieve(question, k=k)), floor=floor),
        )
        for kind in ("dense", "lexical")
    ]
    columns.append(Column(kind="chat", retriever=settings.RETRIEVAL_MODE, ranked=_ranked(chat, floor=floor)))
    given = relevant_passages(chat, floor=floor)
    audit_record(
        action=AuditEvent.Action.RETRIEVAL_TESTED,
        actor=viewer,
        collection=collection,
        target=as_user,
        details={
            "question": question,
            "as_user": as_user.get_username(),
            "retriever": settings.RETRIEVAL_MODE,
            "chunk_ids": [p.chunk_id for p in chat],
        },
        request=request,
    )
    return Comparison(
        question=question,
        as_user=as_user,
        k=k,
        floor=floor,
        weak=settings.RETRIEVAL_WEAK_RELEVANCE,
        columns=columns,
        given=given,
        low_relevance=is_low_relevance(given, weak=settings.RETRIEVAL_WEAK_RELEVANCE),
    )
