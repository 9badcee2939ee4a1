"""The console's chart geometry (pure): bars in proportion, stacked in order, labelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.api.web import charts
from app.api.web.charts import BOTTOM, HEIGHT, LEFT, TOP, WIDTH

START = datetime(2026, 11, 30, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1.0), (1, 1.0), (3, 5.0), (7, 10.0), (12, 20.0), (0.3, 0.5), (480, 500.0)],
)
def test_an_axis_ends_at_a_round_number_at_or_above_the_largest_value(
    value: float, ceiling: float
) -> None:
    assert charts.nice_ceiling(value) == ceiling


def test_throughput_bars_stack_statuses_in_proportion_to_the_axis() -> None:
    buckets = [START + timedelta(minutes=n) for n in range(4)]
    series = {
        "succeeded": [0, 3, 10, 0],
        "partial": [0, 0, 0, 0],
        "failed": [0, 2, 0, 0],
        "canceled": [0, 0, 0, 1],
    }

    chart = charts.stacked_bars(buckets, series, "minute")

    plot_h = HEIGHT - TOP - BOTTOM  # the axis tops at 10 jobs
    by_title = {rect.title: rect for rect in chart.rects}
    assert set(by_title) == {
        "13:01 UTC: 3 succeeded",
        "13:01 UTC: 2 failed",
        "13:02 UTC: 10 succeeded",
        "13:03 UTC: 1 canceled",
    }
    full = by_title["13:02 UTC: 10 succeeded"]
    assert full.height == pytest.approx(plot_h)
    assert full.y == pytest.approx(TOP)
    ok, failed = by_title["13:01 UTC: 3 succeeded"], by_title["13:01 UTC: 2 failed"]
    assert ok.height == pytest.approx(plot_h * 0.3)
    assert failed.y + failed.height == pytest.approx(ok.y)  # failed sits on succeeded
    assert failed.css == "c-failed"
    slot = (WIDTH - LEFT) / 4
    assert ok.x == pytest.approx(LEFT + slot + 1, abs=0.01)  # second slot, gap halved
    assert [label.text for label in chart.labels] == ["10", "0", "13:00", "13:02", "13:03"]
    assert chart.summary == "16 jobs finished in 4 minutes; the busiest minute had 10"


def test_per_type_bars_leave_out_missing_values_and_cap_at_the_top() -> None:
    chart = charts.per_type_bars(
        [("import", [("p50", 0.5), ("p95", 4.0)]), ("export", [("p50", None), ("p95", 2.0)])],
        "s",
    )

    titles = [rect.title for rect in chart.rects]
    assert titles == ["import p50: 500 ms", "import p95: 4.0 s", "export p95: 2.0 s"]
    widths = [rect.width for rect in chart.rects]
    assert widths[1] == pytest.approx(2 * widths[2])  # 4 s twice as long as 2 s
    rates = charts.per_type_bars([("sync", [("failed", 150.0)])], "%", top=100.0)
    assert rates.rects[0].width == pytest.approx(WIDTH - charts.NAMES - 60)  # capped
    assert chart.summary == "import: p50 500 ms, p95 4.0 s; export: p95 2.0 s"
