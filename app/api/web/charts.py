"""Charts of the ledger's trends, drawn on the server as inline SVG.

``/dashboard/charts?window=hour|day|week`` shows, for the caller's tenant, from
:mod:`app.ledger.reads.trends` (rollups plus settled counts, so the charts stay right
after a purge): jobs finished per minute (last hour) or hour (day, week) stacked by final
status; queue wait and run duration p50/p95 per type; failure rate per type. Each chart
also has its numbers as a table (screen readers, copying).

Why SVG drawn here rather than a chart library in the browser: the charts are a few
rectangles each, so a library (tens of KB, to vendor and keep up to date) would buy
nothing; geometry in Python is plain arithmetic that unit tests check
(``tests/unit/test_console_charts.py``); the page works without JavaScript and under a
``script-src 'self'`` policy; and the numbers never pass through a script, so nothing in
them can run. The page refreshes its charts in place every 30 s (``console.js``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.api.web.kit import page, to_login, viewer_of
from app.ledger.reads import trends

router = APIRouter()

#: The final statuses a throughput chart stacks, bottom first.
STACK = ("succeeded", "partial", "failed", "canceled")
WIDTH = 640
HEIGHT = 200
#: Room left of the plot (y labels) and below it (x labels).
LEFT = 44
BOTTOM = 22
TOP = 8
#: One row of a per-type bar chart, and the room for the type names.
ROW = 18
NAMES = 170


@dataclass(frozen=True)
class Rect:
    """A rectangle of a chart, with the tooltip (``<title>``) it carries."""

    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass(frozen=True)
class Chart:
    """What a template draws: rectangles, labels, axis lines, the SVG size, and a summary
    for ``aria-label``."""

    width: int
    height: int
    rects: list[Rect]
    labels: list[Label]
    lines: list[tuple[float, float, float, float]]
    summary: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (an axis's top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop ends at 10


def stacked_bars(
    buckets: Sequence[datetime], series: Mapping[str, Sequence[int]], unit: str
) -> Chart:
    """Bars per bucket, each stacked by status (``series[status][i]`` jobs in bucket i)."""
    count = max(1, len(buckets))
    totals = [sum(series.get(status, [0] * count)[i] for status in STACK) for i in range(count)]
    top = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT, HEIGHT - TOP - BOTTOM
    slot = plot_w / count
    gap = min(2.0, slot * 0.2)
    label_format = "%H:%M" if unit == "minute" else "%m-%d %Hh"
    rects: list[Rect] = []
    for index, start in enumerate(buckets):
        base = float(TOP + plot_h)
        for status in STACK:
            jobs = series.get(status, [0] * count)[index]
            if not jobs:
                continue
            height = plot_h * jobs / top
            base -= height
            rects.append(
                Rect(
                    x=round(LEFT + index * slot + gap / 2, 2),
                    y=round(base, 2),
                    width=round(max(slot - gap, 0.5), 2),
                    height=round(height, 2),
                    css=f"c-{status}",
                    title=f"{start.strftime(label_format)} UTC: {jobs} {status}",
                )
            )
    labels = [
        Label(LEFT - 6, TOP + 10, f"{top:g}", "end"),
        Label(LEFT - 6, TOP + plot_h, "0", "end"),
    ]
    for index in sorted({0, count // 2, count - 1}):
        if index < len(buckets):
            anchor = "start" if index == 0 else ("end" if index == count - 1 else "middle")
            labels.append(
                Label(
                    LEFT + index * slot + (slot if anchor == "end" else 0),
                    HEIGHT - 6,
                    buckets[index].strftime(label_format),
                    anchor,
                )
            )
    total = sum(totals)
    return Chart(
        WIDTH,
        HEIGHT,
        rects,
        labels,
        [(LEFT, TOP + plot_h, WIDTH, TOP + plot_h), (LEFT, TOP, LEFT, TOP + plot_h)],
        f"{total} jobs finished in {count} {unit}s; the busiest {unit} had {max(totals)}",
    )


def per_type_bars(
    rows: Sequence[tuple[str, Sequence[tuple[str, float | None]]]],
    unit: str,
    top: float | None = None,
) -> Chart:
    """Horizontal bars, one group per type: ``rows`` is ``[(type, [(series, value)…])…]``
    (``series`` names the CSS class, e.g. ``p50``); a missing value draws nothing."""
    values = [value for _, pairs in rows for _, value in pairs if value is not None]
    top = top if top is not None else nice_ceiling(max(values, default=0))
    per_group = max((len(pairs) for _, pairs in rows), default=1)
    group_h = per_group * ROW + 6
    height = TOP + max(1, len(rows)) * group_h + BOTTOM
    plot_w = WIDTH - NAMES - 60
    rects: list[Rect] = []
    labels: list[Label] = []
    for index, (name, pairs) in enumerate(rows):
        y0 = TOP + index * group_h
        labels.append(Label(NAMES - 6, y0 + ROW * per_group / 2 + 4, name, "end"))
        for row, (series, value) in enumerate(pairs):
            if value is None:
                continue
            width = plot_w * min(value, top) / top if top else 0
            y = y0 + row * ROW
            text = _amount(value, unit)
            rects.append(
                Rect(
                    NAMES,
                    y + 2,
                    round(max(width, 1), 2),
                    ROW - 4,
                    f"c-{series}",
                    f"{name} {series}: {text}",
                )
            )
            labels.append(Label(NAMES + width + 4, y + ROW - 5, f"{series} {text}"))
    axis = [(float(NAMES), float(TOP), float(NAMES), float(height - BOTTOM))]
    labels.append(Label(NAMES + plot_w, height - 6, f"{_amount(top, unit)}", "end"))
    summary = "; ".join(
        f"{name}: " + ", ".join(f"{s} {_amount(v, unit)}" for s, v in pairs if v is not None)
        for name, pairs in rows
    )
    return Chart(WIDTH, int(height), rects, labels, axis, summary or "no data")


def _amount(value: float, unit: str) -> str:
    """A value as people read it: seconds as ``850 ms``/``4.2 s``/``3.1 min``, rates as %."""
    if unit == "%":
        return f"{value:.0f} %" if value >= 10 or value == 0 else f"{value:.1f} %"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


WINDOWS = ("hour", "day", "week")


@router.get("/charts")
def charts_page(
    request: Request, window: Annotated[str, Query(pattern="^(hour|day|week)$")] = "hour"
) -> Response:
    """Throughput, durations and failure rates of the tenant over the window."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    found = trends.trends(window, tenant=viewer.identity.tenant)
    types = found.types
    context: dict[str, Any] = {
        "window": window,
        "windows": WINDOWS,
        "trend": found,
        "throughput": stacked_bars(found.buckets, found.finished, found.unit),
        "waits": per_type_bars(
            [(t.type, [("p50", t.wait_p50), ("p95", t.wait_p95)]) for t in types], "s"
        ),
        "runs": per_type_bars(
            [(t.type, [("p50", t.run_p50), ("p95", t.run_p95)]) for t in types], "s"
        ),
        "failures": per_type_bars(
            [(t.type, [("failed", 100 * t.failure_rate)]) for t in types], "%", top=100.0
        ),
        "statuses": STACK,
    }
    return page(request, "charts.html", context, viewer=viewer)
