"""The dashboard: how the place is doing, as charts with their numbers beside them.

Superusers see every collection; a collection manager sees the collections they
manage, and nothing about documents restricted away from them
(``assistant.portal.metrics``). Anyone else is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from assistant.portal.charts import MISSING, Chart, Series, bar_chart, line_chart, split_bar
from assistant.portal.metrics import Dashboard, Percentiles, dashboard_allowed, dashboard_for


def _day(day: dt.date) -> str:
    return date_format(day, "j M")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value / 1000, 2)


def _percentile_lines(
    *, id: str, title: str, description: str, labels: Sequence[str], by_day: Sequence[tuple[dt.date, Percentiles]]
) -> Chart:
    return line_chart(
        id=id,
        title=title,
        description=description,
        labels=labels,
        series=[
            Series(_("p50"), [_seconds(p.p50) for _d, p in by_day], "s1"),
            Series(_("p95"), [_seconds(p.p95) for _d, p in by_day], "s2"),
        ],
        unit=" s",
    )


def _summary(p: Percentiles) -> str:
    if not p.count:
        return _("No answers in this period.")
    return _("Over %(count)s answers: p50 %(p50)s s, p95 %(p95)s s.") % {
        "count": p.count,
        "p50": f"{_seconds(p.p50):.2f}",
        "p95": f"{_seconds(p.p95):.2f}",
    }


def charts_for(board: Dashboard) -> dict[str, Chart]:
    labels = [_day(d) for d in board.days]
    questions = [n for _d, n in board.questions]
    ingested = board.ingested
    feedback = board.feedback
    return {
        "questions": bar_chart(
            id="questions",
            title=_("Questions per day"),
            description=_("%(total)s questions in the last %(days)s days; the busiest day had %(most)s.")
            % {"total": sum(questions), "days": len(labels), "most": max(questions, default=0)},
            labels=labels,
            series=Series(_("Questions"), questions),
        ),
        "first_token": _percentile_lines(
            id="first-token",
            title=_("Time to first token"),
            description=_summary(board.times.first_token),
            labels=labels,
            by_day=board.times.first_token_by_day,
        ),
        "total": _percentile_lines(
            id="total-time",
            title=_("Total answer time"),
            description=_summary(board.times.total),
            labels=labels,
            by_day=board.times.total_by_day,
        ),
        "feedback": split_bar(
            id="feedback",
            title=_("Feedback"),
            description=_("%(helpful)s helpful, %(not_helpful)s not helpful.")
            % {"helpful": feedback.helpful, "not_helpful": feedback.not_helpful},
            parts=[
                Series(_("Helpful"), [feedback.helpful], "good"),
                Series(_("Not helpful"), [feedback.not_helpful], "bad"),
            ],
        ),
        "ingested": bar_chart(
            id="ingested",
            title=_("Documents ingested per day"),
            description=_("%(total)s documents with %(pages)s pages became searchable in the last %(days)s days.")
            % {
                "total": sum(d.documents for d in ingested),
                "pages": sum(d.pages for d in ingested),
                "days": len(labels),
            },
            labels=labels,
            series=Series(_("Documents"), [d.documents for d in ingested]),
        ),
        "pages_per_minute": line_chart(
            id="pages-per-minute",
            title=_("Pages per minute"),
            description=_("Pages read, split, embedded and indexed per minute of ingestion, day by day."),
            labels=labels,
            series=[
                Series(
                    _("Pages per minute"),
                    [None if d.pages_per_minute is None else round(d.pages_per_minute, 1) for d in ingested],
                )
            ],
        ),
    }


def _percent(share: float | None) -> str:
    return MISSING if share is None else f"{share:.0%}"


def _in_seconds(ms: float | None) -> str:
    return MISSING if ms is None else f"{ms / 1000:.1f} s"


def tiles_for(board: Dashboard) -> list[dict[str, str]]:
    """The few figures that say the most, big, above the charts."""
    rate = board.pages_per_minute
    return [
        {"label": _("questions"), "value": str(sum(n for _d, n in board.questions))},
        {"label": _("time to first token (p50)"), "value": _in_seconds(board.times.first_token.p50)},
        {"label": _("answer time (p95)"), "value": _in_seconds(board.times.total.p95)},
        {"label": _("rated helpful"), "value": _percent(board.feedback.ratio)},
        {"label": _("documents ingested"), "value": str(sum(d.documents for d in board.ingested))},
        {"label": _("pages per minute"), "value": MISSING if rate is None else f"{rate:.0f}"},
        {"label": _("in the queue"), "value": str(sum(board.queue.values()))},
        {"label": _("failed documents"), "value": str(board.failed_total)},
    ]


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    if not dashboard_allowed(request.user):
        raise PermissionDenied(_("The dashboard is for administrators and collection managers."))
    board = dashboard_for(user=request.user)
    largest = max((s.chunks for s in board.indexes), default=0)
    return render(
        request,
        "portal/dashboard.html",
        {
            "board": board,
            "charts": charts_for(board),
            "tiles": tiles_for(board),
            "queue_total": sum(board.queue.values()),
            "feedback_share": _percent(board.feedback.ratio),
            "index_rows": [(s, round(100 * s.chunks / largest, 1) if largest else 0) for s in board.indexes],
        },
    )
