"""How the place is doing, read from the database: what the dashboard shows.

Every figure is limited to the collections the viewer manages (all of them for a
superuser), and every document figure is built from the documents the viewer may
see in them (``accounts.selectors.documents_hidden_from`` left out), so a count never
reveals a document restricted away from them. Day counts are aggregated in the
database; percentiles load the window's answer times only (two numbers an answer).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.selectors import AnyUser, collections_with_role, documents_hidden_from
from assistant.chat.metrics import percentile
from assistant.chat.models import Feedback, Message
from ingest.models import Chunk, Collection, Document

WINDOW_DAYS = 30
FAILED_SHOWN = 10
INDEXES_SHOWN = 50
QUEUED = (Document.Status.QUEUED, Document.Status.PARSING, Document.Status.EMBEDDING)


def dashboard_collections(user: AnyUser) -> QuerySet[Collection]:
    """The collections whose figures ``user`` may see: those they manage (every one for a superuser)."""
    return collections_with_role(user=user, role=Role.MANAGE)


def dashboard_allowed(user: AnyUser) -> bool:
    # A superuser sees every collection: no query (the top bar asks on every page).
    return bool(getattr(user, "is_superuser", False)) or dashboard_collections(user).exists()


def visible_documents(*, user: AnyUser, collection_ids: list[int]) -> QuerySet[Document]:
    """The documents of these collections ``user`` may see (``documents_visible_to`` over many collections)."""
    return Document.objects.filter(collection_id__in=collection_ids).exclude(
        pk__in=documents_hidden_from(user=user, collection_ids=collection_ids).values("pk")
    )


def window_days(*, today: dt.date, days: int = WINDOW_DAYS) -> list[dt.date]:
    """The last ``days`` days, oldest first, ending with ``today``."""
    return [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]


def _window_start(days: list[dt.date]) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(days[0], dt.time.min))


def _by_day(rows: Any, days: list[dt.date], key: str = "n") -> list[tuple[dt.date, int]]:
    counts = {row["day"]: row[key] or 0 for row in rows}
    return [(day, int(counts.get(day, 0))) for day in days]


def questions_per_day(*, collection_ids: list[int], days: list[dt.date]) -> list[tuple[dt.date, int]]:
    rows = (
        Message.objects.filter(
            role=Message.Role.USER,
            conversation__collection_id__in=collection_ids,
            created_at__gte=_window_start(days),
        )
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
    )
    return _by_day(rows, days)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: list[float]) -> Percentiles:
        if not values:
            return cls(0, None, None)
        return cls(len(values), percentile(values, 50), percentile(values, 95))


@dataclass(frozen=True)
class AnswerTimes:
    """Time to first token and total answer time over the window, and per day."""

    first_token: Percentiles
    total: Percentiles
    first_token_by_day: list[tuple[dt.date, Percentiles]]
    total_by_day: list[tuple[dt.date, Percentiles]]


def answer_times(*, collection_ids: list[int], days: list[dt.date]) -> AnswerTimes:
    """p50/p95 of answers that did not fail (a failure's time says how long the error took)."""
    rows = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            conversation__collection_id__in=collection_ids,
            created_at__gte=_window_start(days),
            error="",
        )
        .annotate(day=TruncDate("created_at"))
        .values_list("day", "first_token_ms", "latency_ms")
    )
    first: dict[dt.date, list[float]] = defaultdict(list)
    total: dict[dt.date, list[float]] = defaultdict(list)
    for day, first_token_ms, latency_ms in rows:
        if first_token_ms is not None:
            first[day].append(first_token_ms)
        if latency_ms is not None:
            total[day].append(latency_ms)
    return AnswerTimes(
        first_token=Percentiles.of([v for values in first.values() for v in values]),
        total=Percentiles.of([v for values in total.values() for v in values]),
        first_token_by_day=[(day, Percentiles.of(first.get(day, []))) for day in days],
        total_by_day=[(day, Percentiles.of(total.get(day, []))) for day in days],
    )


@dataclass(frozen=True)
class FeedbackRatio:
    helpful: int
    not_helpful: int

    @property
    def total(self) -> int:
        return self.helpful + self.not_helpful

    @property
    def ratio(self) -> float | None:
        """The share of ratings that said helpful; None without ratings."""
        return self.helpful / self.total if self.total else None


def feedback_ratio(*, collection_ids: list[int], days: list[dt.date]) -> FeedbackRatio:
    counts = Feedback.objects.filter(
        message__conversation__collection_id__in=collection_ids, updated_at__gte=_window_start(days)
    ).aggregate(
        helpful=Count("id", filter=Q(rating=Feedback.Rating.UP)),
        not_helpful=Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
    )
    return FeedbackRatio(helpful=counts["helpful"], not_helpful=counts["not_helpful"])


@dataclass(frozen=True)
class IngestDay:
    day: dt.date
    documents: int
    pages: int
    # The pages of the documents whose start is known, and the time they took.
    timed_pages: int = 0
    seconds: float = 0.0

    @property
    def pages_per_minute(self) -> float | None:
        return self.timed_pages * 60 / self.seconds if self.seconds > 0 and self.timed_pages else None


def ingested_per_day(*, documents: QuerySet[Document], days: list[dt.date]) -> list[IngestDay]:
    """Documents that became ready each day, their pages, and the time spent on them (start to finish)."""
    timed = Q(started_at__isnull=False, pages__isnull=False)
    rows = (
        documents.filter(status=Document.Status.READY, finished_at__gte=_window_start(days))
        .annotate(day=TruncDate("finished_at"))
        .values("day")
        .annotate(
            n=Count("id"),
            all_pages=Sum("pages"),
            pages_timed=Sum("pages", filter=timed),
            spent=Sum(
                ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()), filter=timed
            ),
        )
    )
    found: dict[dt.date, dict[str, Any]] = {row["day"]: dict(row) for row in rows}
    result = []
    for day in days:
        row: dict[str, Any] = found.get(day) or {}
        spent = row.get("spent")
        result.append(
            IngestDay(
                day=day,
                documents=int(row.get("n") or 0),
                pages=int(row.get("all_pages") or 0),
                timed_pages=int(row.get("pages_timed") or 0),
                seconds=spent.total_seconds() if isinstance(spent, dt.timedelta) else 0.0,
            )
        )
    return result


def pages_per_minute(ingested: list[IngestDay]) -> float | None:
    """Over the window: all pages over all the time their documents took."""
    pages = sum(d.timed_pages for d in ingested)
    seconds = sum(d.seconds for d in ingested)
    return pages * 60 / seconds if seconds > 0 and pages else None


def queue_depth(*, documents: QuerySet[Document]) -> dict[str, int]:
    """Documents waiting or being worked on now, by status."""
    counts = documents.aggregate(**{status: Count("id", filter=Q(status=status)) for status in QUEUED})
    return {status: int(counts[status]) for status in QUEUED}


def failed_documents(*, documents: QuerySet[Document], limit: int = FAILED_SHOWN) -> list[Document]:
    """The latest failures, newest first, with their collection."""
    failed = documents.filter(status=Document.Status.FAILED).select_related("collection")
    return list(failed.order_by("-updated_at", "-id")[:limit])


@dataclass(frozen=True)
class IndexSize:
    collection: Collection
    chunks: int
    dense_bytes: int
    lexical_bytes: int

    @property
    def disk_bytes(self) -> int:
        return self.dense_bytes + self.lexical_bytes


def _file_size(path: Any) -> int:
    try:
        return int(path.stat().st_size)
    except OSError:
        return 0


def index_sizes(*, documents: QuerySet[Document], collections: list[Collection]) -> list[IndexSize]:
    """Searchable chunks and the size on disk of the FAISS and BM25 files, largest collections first."""
    from ingest.index import index_path
    from ingest.lexical import lexical_path

    chunks = dict(
        Chunk.objects.filter(
            collection_id__in=[c.pk for c in collections],
            document__in=documents.filter(status=Document.Status.READY).values("pk"),
        )
        .values("collection_id")
        .annotate(n=Count("id"))
        .values_list("collection_id", "n")
    )
    sizes = [
        IndexSize(
            collection=c,
            chunks=int(chunks.get(c.pk, 0)),
            dense_bytes=_file_size(index_path(c.pk)),
            lexical_bytes=_file_size(lexical_path(c.pk)),
        )
        for c in collections
    ]
    return sorted(sizes, key=lambda s: (-s.chunks, -s.disk_bytes, s.collection.name))


@dataclass
class Dashboard:
    days: list[dt.date]
    collections: int
    questions: list[tuple[dt.date, int]]
    times: AnswerTimes
    feedback: FeedbackRatio
    ingested: list[IngestDay]
    pages_per_minute: float | None
    queue: dict[str, int]
    failed: list[Document]
    failed_total: int
    indexes: list[IndexSize] = field(default_factory=list)


def dashboard_for(*, user: AnyUser, today: dt.date | None = None, days: int = WINDOW_DAYS) -> Dashboard:
    """Every figure of the dashboard as ``user`` may see it."""
    collections = list(dashboard_collections(user).order_by("name"))
    ids = [c.pk for c in collections]
    window = window_days(today=today or timezone.localdate(), days=days)
    documents = visible_documents(user=user, collection_ids=ids)
    ingested = ingested_per_day(documents=documents, days=window)
    indexes = index_sizes(documents=documents, collections=collections)
    return Dashboard(
        days=window,
        collections=len(collections),
        questions=questions_per_day(collection_ids=ids, days=window),
        times=answer_times(collection_ids=ids, days=window),
        feedback=feedback_ratio(collection_ids=ids, days=window),
        ingested=ingested,
        pages_per_minute=pages_per_minute(ingested),
        queue=queue_depth(documents=documents),
        failed=failed_documents(documents=documents),
        failed_total=documents.filter(status=Document.Status.FAILED).count(),
        indexes=indexes[:INDEXES_SHOWN],
    )
