"""Small bar and line charts as inline SVG, drawn on the server: no chart library, no script.

Colours come from the stylesheet (``dashboard.css`` classes over ``app.css``'s
variables), so dark mode follows the page. Each chart carries a text alternative
(``<title>`` and ``<desc>``) and its numbers as rows for a table, so a screen reader
(and anyone who prefers to read) gets the same figures as the picture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 12, 28
X_LABELS = 6  # at most this many day labels under the axis
MISSING = "—"  # a figure there is nothing to compute from


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    # The CSS class that colours it (``dashboard.css``): s1, s2.
    css: str = "s1"


def _number(value: float | None) -> str:
    if value is None:
        return MISSING
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str
    labels: Sequence[str]
    series: Sequence[Series]
    unit: str = ""
    svg: SafeString = field(default_factory=lambda: mark_safe(""))

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """The numbers behind the picture: one row a label, one column a series."""
        return [(label, [_number(s.values[i]) for s in self.series]) for i, label in enumerate(self.labels)]


def nice_ceiling(value: float) -> float:
    """The axis top: the smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _frame(*, top: float, labels: Sequence[str], unit: str, x_of: Callable[[int], float]) -> SafeString:
    """Grid lines with their values, and a few labels under the axis."""
    plot_h = HEIGHT - TOP - BOTTOM
    grid = []
    for share in (0, 0.5, 1):
        y = TOP + plot_h * (1 - share)
        grid.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 6,
                f"{y + 4:.1f}",
                f"{_number(top * share)}{unit}",
            )
        )
    every = max(1, math.ceil(len(labels) / X_LABELS))
    shown = [i for i in range(len(labels)) if (len(labels) - 1 - i) % every == 0]
    ticks = format_html_join(
        "",
        '<text class="axis" x="{}" y="{}" text-anchor="middle">{}</text>',
        ((f"{x_of(i):.1f}", HEIGHT - 8, labels[i]) for i in shown),
    )
    return format_html("{}{}", mark_safe("".join(grid)), ticks)  # noqa: S308 (built by format_html)


def _svg(chart_id: str, title: str, description: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-title {}-desc" '
        'preserveAspectRatio="xMidYMid meet"><title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        WIDTH,
        HEIGHT,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        description,
        body,
    )


def bar_chart(*, id: str, title: str, description: str, labels: Sequence[str], series: Series, unit: str = "") -> Chart:
    """One bar a label (a day), from zero up to its value."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((v or 0 for v in series.values), default=0))
    slot = plot_w / max(1, len(labels))

    def x_of(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    bars = format_html_join(
        "",
        '<rect class="bar {}" x="{}" y="{}" width="{}" height="{}"><title>{}: {}</title></rect>',
        (
            (
                series.css,
                f"{LEFT + slot * i + slot * 0.15:.1f}",
                f"{TOP + plot_h * (1 - (v or 0) / top):.1f}",
                f"{slot * 0.7:.1f}",
                f"{plot_h * (v or 0) / top:.1f}",
                labels[i],
                f"{_number(v)}{unit}",
            )
            for i, v in enumerate(series.values)
            if v
        ),
    )
    body = format_html("{}{}", _frame(top=top, labels=labels, unit=unit, x_of=x_of), bars)
    return Chart(id, title, description, labels, [series], unit, _svg(id, title, description, body))


def line_chart(
    *, id: str, title: str, description: str, labels: Sequence[str], series: Sequence[Series], unit: str = ""
) -> Chart:
    """One line a series; a label without a value breaks the line there (a day with no answers)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0))
    step = plot_w / max(1, len(labels) - 1)

    def x_of(i: int) -> float:
        return LEFT + step * i if len(labels) > 1 else LEFT + plot_w / 2

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    drawn = []
    for s in series:
        path, pen_down = [], False
        for i, v in enumerate(s.values):
            if v is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{x_of(i):.1f},{y_of(v):.1f}")
            pen_down = True
        dots = format_html_join(
            "",
            '<circle class="dot {}" cx="{}" cy="{}" r="3"><title>{} {}: {}</title></circle>',
            (
                (s.css, f"{x_of(i):.1f}", f"{y_of(v):.1f}", s.name, labels[i], f"{_number(v)}{unit}")
                for i, v in enumerate(s.values)
                if v is not None
            ),
        )
        drawn.append(format_html('<path class="line {}" d="{}"/>{}', s.css, " ".join(path), dots))
    body = format_html(
        "{}{}",
        _frame(top=top, labels=labels, unit=unit, x_of=x_of),
        mark_safe("".join(drawn)),  # noqa: S308 (built by format_html)
    )
    return Chart(id, title, description, labels, list(series), unit, _svg(id, title, description, body))


def split_bar(*, id: str, title: str, description: str, parts: Sequence[Series]) -> Chart:
    """One horizontal bar split in proportion to each part's single value (helpful vs not)."""
    total = sum(p.values[0] or 0 for p in parts)
    height, x = 36, 0.0
    pieces = []
    for p in parts:
        value = p.values[0] or 0
        width = WIDTH * value / total if total else 0
        if width:
            pieces.append(
                format_html(
                    '<rect class="bar {}" x="{}" y="0" width="{}" height="{}"><title>{}: {}</title></rect>',
                    p.css,
                    f"{x:.1f}",
                    f"{width:.1f}",
                    height,
                    p.name,
                    _number(value),
                )
            )
        x += width
    if not total:
        pieces.append(format_html('<rect class="empty" x="0" y="0" width="{}" height="{}"/>', WIDTH, height))
    svg = format_html(
        '<svg class="chart split" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-title {}-desc" '
        'preserveAspectRatio="none"><title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        WIDTH,
        height,
        id,
        id,
        id,
        title,
        id,
        description,
        mark_safe("".join(pieces)),  # noqa: S308 (built by format_html)
    )
    labels = [p.name for p in parts]
    return Chart(id, title, description, labels, [Series(title, [p.values[0] for p in parts])], "", svg)
