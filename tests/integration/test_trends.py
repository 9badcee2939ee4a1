"""Trends (``app.ledger.reads.trends``) equal what the job rows say, on both engines:
before any settle, after settling, after a real purge (what was purged stays in the
charts), per tenant; and a read never counts a job twice while settles and purges write."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app import db
from app.ledger import engines
from app.ledger import transitions as ledger
from app.ledger.engines.base import aware
from app.ledger.operations.retention import purge
from app.ledger.reads import trends
from app.ledger.rules.durations import duration_bucket, histogram_percentile
from models.tables import hourly_rollups, jobs
from tests.support.engines import KINDS, ledger_on

TYPES = ("example.echo", "example.other")
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}


@pytest.fixture(params=KINDS, autouse=True)
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs once per engine (tests/support/engines.py)."""
    with ledger_on(request.param, tmp_path, monkeypatch) as kind:
        yield kind


def database_now() -> datetime:
    with db.engine().connect() as connection:
        return engines.current().database_now(connection)


def finished_job(
    status: str,
    *,
    completed: datetime,
    wait: float | None,
    run: float,
    tenant: str = "default",
    job_type: str = TYPES[0],
    starts: int = 1,
) -> uuid.UUID:
    """A job walked through the ledger to ``status``, then placed at ``completed`` with the
    given queue wait and run duration (test set-up, not a ledger path). ``wait=None``: it
    never started (canceled while queued). ``starts``: executions (the extra ones lost)."""
    job_id = uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(id=job_id, type=job_type, payload={}, tenant=tenant, celery_task_id="t")
    )
    if wait is None:
        ledger.request_cancel(job_id, actor="cli", reason="not needed")
        stamps = {"created_at": completed, "completed_at": completed}
    else:
        for attempt in range(starts):
            execution = f"e{attempt}"
            ledger.record_started(job_id, celery_task_id="t", execution_id=execution, worker="w")
            if attempt < starts - 1:
                ledger.record_retrying(job_id, execution_id=execution, reason="lost")
        last = f"e{starts - 1}"
        if status == "succeeded":
            ledger.record_finished(job_id, execution_id=last, result=None)
        elif status == "partial":
            ledger.record_finished(job_id, execution_id=last, result=None, errors=[{"row": 1}])
        elif status == "failed":
            ledger.record_failed(job_id, reason="boom", execution_id=last)
        else:
            ledger.record_canceled(job_id, reason="stop", actor="cli", execution_id=last)
        started = completed - timedelta(seconds=run)
        stamps = {
            "created_at": started - timedelta(seconds=wait),
            "started_at": started,
            "completed_at": completed,
        }
    with db.engine().begin() as connection:
        connection.execute(update(jobs).where(jobs.c.id == job_id).values(**stamps))
    return job_id


def week_of_jobs(now: datetime) -> list[uuid.UUID]:
    """Jobs of two tenants and two types in every final status, finished over the last
    seven days (several within the last hour), some retried, some never started."""
    statuses = ("succeeded", "succeeded", "partial", "failed", "canceled")
    made = []
    for n in range(60):
        ago = timedelta(minutes=n * 3) if n < 25 else timedelta(hours=(n - 24) * 4.5)
        made.append(
            finished_job(
                statuses[n % len(statuses)],
                completed=now - ago - timedelta(seconds=5),
                wait=None if n % 11 == 3 else (n % 6) * 0.37 + 0.0004 * n,
                run=(n % 7) * 1.9 + 0.012,
                tenant="acme" if n % 3 == 0 else "default",
                job_type=TYPES[n % 2],
                starts=2 if n % 8 == 1 else 1,
            )
        )
    return made


def rows() -> list[dict[str, Any]]:
    """Every finished job as stored (read with Core: the same on both engines)."""
    with db.engine().connect() as connection:
        query = select(jobs).where(jobs.c.completed_at.is_not(None))
        return [dict(row) for row in connection.execute(query).mappings()]


def expected(job_rows: list[dict[str, Any]], chart: trends.Trends) -> dict[str, Any]:
    """The chart the rows make, computed naively: one job at a time."""
    start, step = chart.buckets[0], STEP[chart.unit]
    finished = {status: [0] * len(chart.buckets) for status in trends.STATUSES}
    per_type: dict[str, dict[str, Any]] = {}
    for job in job_rows:
        completed = aware(job["completed_at"])
        if completed < start or (chart.tenant and job["tenant"] != chart.tenant):
            continue
        finished[job["status"]][math.floor((completed - start) / step)] += 1
        kind = per_type.setdefault(
            job["type"], {"statuses": [], "retries": 0, "waits": [], "runs": []}
        )
        kind["statuses"].append(job["status"])
        kind["retries"] += max(0, job["attempts"] - 1)
        if job["started_at"] is not None:
            started = aware(job["started_at"])
            kind["waits"].append((started - aware(job["created_at"])).total_seconds())
            kind["runs"].append((completed - started).total_seconds())
    return {"finished": finished, "types": per_type}


def check(chart: trends.Trends, job_rows: list[dict[str, Any]]) -> None:
    """``chart`` says what ``job_rows`` say: counts exactly, percentiles within 5 %."""
    naive = expected(job_rows, chart)
    assert chart.finished == naive["finished"]
    assert [t.type for t in chart.types] == sorted(naive["types"])
    for kind in chart.types:
        raw = naive["types"][kind.type]
        statuses = raw["statuses"]
        assert kind.finished == len(statuses)
        for status in trends.STATUSES:
            assert getattr(kind, status) == statuses.count(status)
        assert kind.failure_rate == pytest.approx(statuses.count("failed") / len(statuses))
        assert kind.retries == raw["retries"]
        for name, values in (("wait", raw["waits"]), ("run", raw["runs"])):
            for fraction in (0.50, 0.95):
                got = getattr(kind, f"{name}_p{round(fraction * 100)}")
                histogram: dict[str, int] = {}
                for value in values:
                    bucket = str(duration_bucket(value))
                    histogram[bucket] = histogram.get(bucket, 0) + 1
                assert got == histogram_percentile(histogram, fraction)
                exact = sorted(values)[max(1, math.ceil(fraction * len(values))) - 1]
                assert got == pytest.approx(exact, rel=0.05, abs=0.001)


def every_chart() -> list[trends.Trends]:
    return [
        trends.trends(window, tenant=tenant)
        for window in trends.WINDOWS
        for tenant in (None, "acme", "default")
    ]


def test_the_charts_are_the_job_rows_before_any_settle() -> None:
    week_of_jobs(database_now())
    job_rows = rows()
    for chart in every_chart():
        check(chart, job_rows)
    hour = trends.trends("hour")
    assert hour.unit == "minute"
    assert len(hour.buckets) == 60
    assert sum(map(sum, hour.finished.values())) > 10  # the last hour has jobs to show
    assert len(trends.trends("week").buckets) == 168


def test_settling_and_a_real_purge_keep_every_chart_as_it_was() -> None:
    week_of_jobs(database_now())
    job_rows = rows()
    before = {(c.window, c.tenant): c for c in every_chart()}
    # settle only the jobs older than three days; the purge then meets jobs on both sides
    # of the watermark (older ones already rolled up, newer ones folded by the purge)
    settled_first = trends.settle(margin=timedelta(days=3))
    assert 0 < settled_first < len(job_rows)
    result = purge(older_than_days=1)
    assert result.deleted > settled_first  # it deleted jobs past the watermark too
    left = rows()
    assert len(left) == len(job_rows) - result.deleted
    assert trends.settle(margin=timedelta(0)) == len(left)
    for chart in every_chart():
        check(chart, job_rows)  # the purged jobs are still in the day and week charts
        old = before[(chart.window, chart.tenant)]
        assert chart.finished == old.finished or chart.buckets != old.buckets
    # everything is rolled up exactly once: the all-time tallies are the job rows
    totals = trends.totals()
    assert sum(t.finished for t in totals.values()) == len(job_rows)
    for (tenant, job_type), tally in totals.items():
        mine = [j for j in job_rows if j["tenant"] == tenant and j["type"] == job_type]
        assert tally.failed == sum(j["status"] == "failed" for j in mine)
        assert tally.retries == sum(max(0, j["attempts"] - 1) for j in mine)
        assert tally.timed == sum(j["started_at"] is not None for j in mine)
    with db.engine().connect() as connection:
        hourly = connection.execute(select(func.sum(hourly_rollups.c.succeeded))).scalar()
    assert hourly == sum(j["status"] == "succeeded" for j in job_rows)


def test_a_settle_repeated_or_a_purge_twice_counts_nothing_again() -> None:
    week_of_jobs(database_now())
    job_rows = rows()
    assert trends.settle(margin=timedelta(0)) == len(job_rows)
    assert trends.settle(margin=timedelta(0)) == 0
    purge(older_than_days=1)
    purge(older_than_days=1)
    assert trends.settle(margin=timedelta(0)) == 0
    assert sum(t.finished for t in trends.totals().values()) == len(job_rows)
    for chart in every_chart():
        check(chart, job_rows)


def test_a_tenant_sees_only_its_own_jobs() -> None:
    now = database_now()
    finished_job("failed", completed=now, wait=0.5, run=1.0, tenant="acme")
    finished_job("succeeded", completed=now, wait=0.5, run=1.0, tenant="other")
    trends.settle(margin=timedelta(0))
    for window in trends.WINDOWS:
        chart = trends.trends(window, tenant="acme")
        assert sum(chart.finished["failed"]) == 1
        assert sum(chart.finished["succeeded"]) == 0
        assert [t.failure_rate for t in chart.types] == [1.0]
    assert set(trends.totals(tenant="acme")) == {("acme", TYPES[0])}


def test_an_unknown_window_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="hour, day, week"):
        trends.trends("month")


def test_reads_while_settles_and_purges_write_count_every_job_once() -> None:
    """The jobs are fixed; settles, a purge and readers race. Every read must see every
    job exactly once, whichever side of the watermark (or of the purge) it is on."""
    week_of_jobs(database_now())
    job_count = len(rows())
    seen: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for margin_days in (5, 4, 3, 2):
                trends.settle(margin=timedelta(days=margin_days))
            purge(older_than_days=1, batch_size=7, pause_factor=0)
            trends.settle(margin=timedelta(0))
        except BaseException as error:  # reported by the test thread below
            errors.append(error)

    def reader() -> None:
        try:
            while writing.is_alive():
                seen.append(sum(t.finished for t in trends.totals().values()))
                week = trends.trends("week")
                seen.append(sum(map(sum, week.finished.values())))
        except BaseException as error:
            errors.append(error)

    writing = threading.Thread(target=writer)
    reading = threading.Thread(target=reader)
    writing.start()
    reading.start()
    writing.join(timeout=120)
    reading.join(timeout=120)
    assert errors == []
    assert seen  # the reader read while the writer wrote
    assert set(seen) == {job_count}


def test_the_metrics_collector_reads_the_same_numbers_on_each_engine() -> None:
    """``GET /metrics``' collector on this engine: held and finished jobs per tenant, the
    histogram counts, live jobs, the write-retry counter."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from app.api.metrics import REGISTRY

    now = database_now()
    finished_job("failed", completed=now, wait=0.2, run=0.4, tenant="acme")
    finished_job("succeeded", completed=now, wait=0.2, run=0.4, tenant="other", starts=2)
    live = uuid.uuid4()
    ledger.record_queued(ledger.NewJob(id=live, type=TYPES[1], payload={}, tenant="acme"))
    samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value

    def key(**labels: str) -> frozenset[tuple[str, str]]:
        return frozenset(labels.items())

    assert samples["jobledger_jobs"] == {
        key(tenant="acme", type=TYPES[0], status="failed"): 1.0,
        key(tenant="other", type=TYPES[0], status="succeeded"): 1.0,
        key(tenant="acme", type=TYPES[1], status="queued"): 1.0,
    }
    assert samples["jobledger_live_jobs"] == {
        key(tenant="acme", type=TYPES[1], status="queued"): 1.0
    }
    finished = samples["jobledger_jobs_finished_total"]
    assert finished[key(tenant="acme", type=TYPES[0], status="failed")] == 1.0
    assert finished[key(tenant="other", type=TYPES[0], status="succeeded")] == 1.0
    assert sum(finished.values()) == 2.0
    assert samples["jobledger_job_run_seconds_count"][key(tenant="acme", type=TYPES[0])] == 1.0
    assert samples["jobledger_job_retries_total"][key(tenant="other", type=TYPES[0])] == 1.0
    assert samples["jobledger_ledger_write_retries_total"] == {frozenset(): 0.0}
    assert samples["jobledger_purge_running"] == {frozenset(): 0.0}
