"""Trends for charts and ``/metrics``: finished jobs per minute or hour by status, queue
wait and run duration percentiles and failure rate per type, over the last hour, day or
week, per tenant; right however much the retention purge has deleted.

Usage::

    from app.ledger.reads import trends

    chart = trends.trends("day", tenant="acme")   # hourly buckets of the last 24 hours
    chart.as_dict()                                # JSON for the dashboard
    trends.totals()                                # all-time tallies per (tenant, type)
    trends.settle()                                # what the settle_counts job runs

How, and why:

- **Hourly rollups.** The purge's daily rollups (``job_daily_rollups``) are per day and
  only hold purged jobs; the settled status counts are per hour of *creation* and lose
  purged jobs. A week of hourly buckets that survives a purge at one day's retention
  needs hourly rows of its own: ``job_hourly_rollups`` (per UTC hour of ``completed_at``,
  type and tenant: counts per final status, retries, lost executions, and log-scale
  histograms of queue wait ``started_at - created_at`` and run duration ``completed_at -
  started_at``, :mod:`app.ledger.rules.durations`) and ``job_trend_totals`` (the same
  summed over the hours, what ``/metrics`` reads at each scrape). About 170 rows per week
  per type and tenant; never deleted.
- **A watermark, and the purge.** :func:`settle` (run by the ``settle_counts`` job
  every ``JOBLEDGER_SETTLE_INTERVAL`` seconds) folds the jobs finished between the
  watermark and one minute ago into those rows and moves the watermark, in one
  transaction (at most a day of completions per transaction, so a first settle over a
  large ledger goes in steps). The purge folds the jobs of each batch that lie past the
  watermark in the transaction that deletes them (:func:`fold_purged`). So each finish
  is in exactly one of the rollups and ``jobs``, and a read adds the rollups to an
  aggregate of the jobs past the watermark (a minute or two of them). Every write to the
  rollups first moves the watermark row with a compare-and-set on its ``version`` (the
  row's lock on PostgreSQL; SQLite's one writer), so writers never interleave, and a
  read that sees the version change under it reads again: it never counts a job twice
  or not at all.
- **The last hour, per minute**, is read from ``jobs`` alone (minutes are not rolled up):
  the retention is at least a day (``JOBLEDGER_RETENTION_DAYS >= 1``), so those jobs are
  all there. Only a purge run by hand with ``--older-than-days`` below an hour removes
  jobs from this view (the day and week views keep them).
- Per tenant and type, all time (:func:`totals`, :func:`live`): retries (starts beyond
  a job's first), lost executions, and lifeline rescues (events the lifeline wrote:
  counted from each job's events when it is rolled up, so they survive the purge too).
- **A finish is counted when it happens.** A job retried by hand after it was rolled up
  and finished again is counted at each finish (as a throughput chart should); a job
  that never started (canceled while queued) has no wait and no duration. The failure
  rate of a type is ``failed / finished`` (partial and canceled jobs are not failures).
- Percentiles are nearest-rank over the histogram, within 5 % (the bucket's middle).

Both engines: the aggregates are SQLAlchemy Core with the engine's time bucket,
duration and histogram-bucket expressions (:mod:`app.ledger.engines.trend_queries`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import Connection

from app.db import engine, in_transaction
from app.ledger import engines
from app.ledger.engines import trend_queries as tq
from app.ledger.engines.base import aware
from app.ledger.reads.counts import SETTLE_MARGIN
from app.ledger.rules.durations import duration_bucket, histogram_percentile, merge_histograms

T = TypeVar("T")
Unit = Literal["minute", "hour"]

#: The final statuses a chart shows, in its order.
STATUSES = ("succeeded", "partial", "failed", "canceled")
#: Each window's bucket and how many buckets it has (the last one is the current one).
WINDOWS: dict[str, tuple[Unit, int]] = {
    "hour": ("minute", 60),
    "day": ("hour", 24),
    "week": ("hour", 168),
}
_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}
#: Most completions one settle transaction folds (a first settle over a year goes in steps).
SETTLE_STEP = timedelta(days=1)
#: Reads tried before giving up while rollup writers keep moving the version under them.
READ_TRIES = 20


@dataclass
class Tally:
    """Finished jobs of one group (an hour, type and tenant; or any sum of those): counts
    per final status and mergeable duration histograms."""

    succeeded: int = 0
    partial: int = 0
    failed: int = 0
    canceled: int = 0
    #: Starts beyond each job's first (Celery retries and lost executions alike).
    retries: int = 0
    lost_executions: int = 0
    #: Events the lifeline wrote about these jobs (each one a job it rescued once).
    lifeline_rescues: int = 0
    #: Jobs that started: they have a queue wait and a run duration.
    timed: int = 0
    wait_sum_seconds: float = 0.0
    run_sum_seconds: float = 0.0
    wait_histogram: dict[str, int] = field(default_factory=dict)
    run_histogram: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.succeeded + self.partial + self.failed + self.canceled

    def add(self, other: Tally) -> Tally:
        """Add ``other``'s jobs to these; returns self."""
        for name in _NUMBERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        merge_histograms(self.wait_histogram, other.wait_histogram)
        merge_histograms(self.run_histogram, other.run_histogram)
        return self

    def values(self) -> dict[str, Any]:
        """The columns of a rollup row holding this tally."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of_row(cls, row: Any) -> Tally:
        """The tally a rollup row holds."""
        mapping = row._mapping
        tally = cls(**{name: mapping[name] for name in _NUMBERS})
        merge_histograms(tally.wait_histogram, mapping["wait_histogram"] or {})
        merge_histograms(tally.run_histogram, mapping["run_histogram"] or {})
        return tally


_NUMBERS = tuple(f.name for f in fields(Tally) if not f.name.endswith("_histogram"))
#: (time bucket, type, tenant)
Key = tuple[datetime, str, str]


# -- writing the rollups -------------------------------------------------------------------


def settle(margin: timedelta = SETTLE_MARGIN) -> int:
    """Fold the jobs finished since the watermark (up to ``now() - margin``) into the
    hourly rollups; how many. Safe to run concurrently and repeatedly."""
    folded = 0
    while True:
        jobs, done = in_transaction(functools.partial(_settle_step, margin=margin), "trend settle")
        folded += jobs
        if done:
            return folded


def _settle_step(connection: Connection, margin: timedelta) -> tuple[int, bool]:
    mark = connection.execute(tq.read_watermark()).one()
    upto = engines.current().database_now(connection) - margin
    since = None if mark.settled_before is None else aware(mark.settled_before)
    first = since or connection.execute(tq.oldest_finished()).scalar()
    end = upto if first is None else min(upto, aware(first) + SETTLE_STEP)
    if since is not None and end <= since:
        return 0, True
    if connection.execute(tq.claim_watermark(mark.version, end)).rowcount != 1:
        return 0, False  # another settle or a purge batch moved it: read it again
    tallies = _aggregate(connection, "hour", since, end, None)
    _merge(connection, tallies)
    return sum(t.finished for t in tallies.values()), end >= upto


def fold_purged(connection: Connection, batch: Iterable[Mapping[str, Any]]) -> int:
    """Fold the jobs of a purge batch that are not rolled up yet (finished past the
    watermark) into the hourly rollups; call in the transaction that deletes them. How
    many were folded."""
    while True:
        mark = connection.execute(tq.read_watermark()).one()
        claim = tq.claim_watermark(mark.version, mark.settled_before)
        if connection.execute(claim).rowcount == 1:
            break  # the watermark row is ours until this batch commits
    settled = None if mark.settled_before is None else aware(mark.settled_before)
    unsettled = [job for job in batch if settled is None or aware(job["completed_at"]) >= settled]
    rescues = {
        str(row.job_id): int(row.rescues)
        for row in connection.execute(tq.lifeline_events_of([job["id"] for job in unsettled]))
    }
    tallies: dict[Key, Tally] = {}
    for job in unsettled:
        completed = aware(job["completed_at"])
        key = (_floor(completed, "hour"), job["type"], job["tenant"])
        tally = _tally_of_job(job, completed)
        tally.lifeline_rescues = rescues.get(str(job["id"]), 0)
        tallies.setdefault(key, Tally()).add(tally)
    _merge(connection, tallies)
    return sum(t.finished for t in tallies.values())


def _tally_of_job(job: Mapping[str, Any], completed: datetime) -> Tally:
    tally = Tally(
        retries=max(0, int(job["attempts"]) - 1), lost_executions=int(job["lost_executions"])
    )
    setattr(tally, job["status"], 1)
    if job["started_at"] is not None:
        started = aware(job["started_at"])
        wait = (started - aware(job["created_at"])).total_seconds()
        run = (completed - started).total_seconds()
        tally.timed = 1
        tally.wait_sum_seconds, tally.run_sum_seconds = wait, run
        tally.wait_histogram = {str(duration_bucket(wait)): 1}
        tally.run_histogram = {str(duration_bucket(run)): 1}
    return tally


def _merge(connection: Connection, tallies: Mapping[Key, Tally]) -> None:
    """Add tallies to their hourly rows and to the all-time rows (the caller holds the
    watermark row, so no other writer merges meanwhile). One read of the stored rows and
    one batched write per table: a first settle merges hundreds of rows per day of jobs,
    and a statement round trip per row was most of its time."""
    if not tallies:
        return
    engine_ = engines.current()
    hours = sorted({hour for hour, _type, _tenant in tallies})
    stored: dict[Any, Tally] = {
        (aware(row.hour), row.type, row.tenant): Tally.of_row(row)
        for row in connection.execute(tq.hours_between(hours[0], hours[-1]))
    }
    by_type: dict[Any, Tally] = {}
    for key, tally in tallies.items():
        stored.setdefault(key, Tally()).add(tally)
        by_type.setdefault(key[1:], Tally()).add(tally)
    columns = [f.name for f in fields(Tally)]
    connection.execute(
        tq.store_hours(engine_, columns),
        [_row(stored[key], hour=key[0], type=key[1], tenant=key[2]) for key in sorted(tallies)],
    )
    all_time = {
        (row.type, row.tenant): Tally.of_row(row) for row in connection.execute(tq.totals(None))
    }
    connection.execute(
        tq.store_totals(engine_, columns),
        [
            _row(all_time.get(key, Tally()).add(tally), type=key[0], tenant=key[1])
            for key, tally in sorted(by_type.items())
        ],
    )


def _row(tally: Tally, **key: Any) -> dict[str, Any]:
    """The parameters of one rollup row: its key and the tally's columns."""
    return {**key, **tally.values()}


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeTrend:
    """One job type over a window: its finishes, failure rate and duration percentiles
    (seconds; None when no job of it started in the window)."""

    type: str
    finished: int
    succeeded: int
    partial: int
    failed: int
    canceled: int
    #: ``failed / finished`` (0.0 when nothing finished).
    failure_rate: float
    retries: int
    wait_p50: float | None
    wait_p95: float | None
    run_p50: float | None
    run_p95: float | None


@dataclass(frozen=True)
class Trends:
    """A window of finished jobs: per bucket and status, and per type."""

    window: str
    #: ``minute`` (window ``hour``) or ``hour`` (``day``, ``week``).
    unit: str
    tenant: str | None
    #: Start of each bucket, oldest first (UTC); the last is the current, partial one.
    buckets: list[datetime]
    #: Jobs finished in each bucket, per final status (lists parallel to ``buckets``).
    finished: dict[str, list[int]]
    #: Per job type over the whole window, by type name.
    types: list[TypeTrend]

    def as_dict(self) -> dict[str, Any]:
        """The trends as one JSON-ready document."""
        return {
            "window": self.window,
            "unit": self.unit,
            "tenant": self.tenant,
            "buckets": [b.isoformat() for b in self.buckets],
            "finished": self.finished,
            "types": [t.__dict__ for t in self.types],
        }


def trends(window: str = "hour", *, tenant: str | None = None) -> Trends:
    """The last ``window`` (``hour``: 60 minutes; ``day``: 24 hours; ``week``: 168 hours)
    of the jobs of ``tenant`` (every tenant when None).

    Raises:
        ValueError: an unknown window (the message names the known ones).
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    unit, count = WINDOWS[window]
    with engine().connect() as connection:
        now = engines.current().database_now(connection)
        start = _floor(now, unit) - (count - 1) * _STEP[unit]
        if unit == "minute":
            tallies = _aggregate(connection, unit, start, None, tenant, rescues=False)
        else:
            tallies = _consistent(
                connection, lambda settled: _hours(connection, start, settled, tenant)
            )
    buckets = [start + n * _STEP[unit] for n in range(count)]
    finished = {status: [0] * count for status in STATUSES}
    per_type: dict[str, Tally] = {}
    for (bucket, job_type, _tenant), tally in tallies.items():
        index = int((bucket - start) / _STEP[unit])
        if 0 <= index < count:
            for status in STATUSES:
                finished[status][index] += getattr(tally, status)
            per_type.setdefault(job_type, Tally()).add(tally)
    return Trends(
        window=window,
        unit=unit,
        tenant=tenant,
        buckets=buckets,
        finished=finished,
        types=[_type_trend(name, tally) for name, tally in sorted(per_type.items())],
    )


def totals(*, tenant: str | None = None) -> dict[tuple[str, str], Tally]:
    """Every finish the ledger has seen, per ``(tenant, type)``: the all-time rollups
    plus the jobs past the watermark; purged jobs stay counted."""

    def read(settled: datetime | None) -> dict[tuple[str, str], Tally]:
        summed: dict[tuple[str, str], Tally] = {}
        for row in connection.execute(tq.totals(tenant)):
            summed.setdefault((row.tenant, row.type), Tally()).add(Tally.of_row(row))
        for (_hour, job_type, job_tenant), tally in _aggregate(
            connection, "hour", settled, None, tenant
        ).items():
            summed.setdefault((job_tenant, job_type), Tally()).add(tally)
        return summed

    with engine().connect() as connection:
        return _consistent(connection, read)


@dataclass(frozen=True)
class LiveJobs:
    """Live jobs of one tenant, type and status, with what happened to them so far."""

    jobs: int
    retries: int
    lost_executions: int
    lifeline_rescues: int


def live(*, tenant: str | None = None) -> dict[tuple[str, str, str], LiveJobs]:
    """Live jobs (queued, running, retrying) per ``(tenant, type, status)``."""
    with engine().connect() as connection:
        return {
            (row.tenant, row.type, row.status): LiveJobs(
                jobs=int(row.jobs),
                retries=int(row.retries or 0),
                lost_executions=int(row.lost_executions or 0),
                lifeline_rescues=int(row.lifeline_rescues or 0),
            )
            for row in connection.execute(tq.live_jobs(tenant))
        }


def _hours(
    connection: Connection, start: datetime, settled: datetime | None, tenant: str | None
) -> dict[Key, Tally]:
    """The hourly rows from ``start`` plus the jobs finished past the watermark."""
    tallies: dict[Key, Tally] = {}
    for row in connection.execute(tq.hours_from(start, tenant)):
        tallies.setdefault((aware(row.hour), row.type, row.tenant), Tally()).add(Tally.of_row(row))
    since = start if settled is None else max(settled, start)
    for key, tally in _aggregate(connection, "hour", since, None, tenant, rescues=False).items():
        tallies.setdefault(key, Tally()).add(tally)
    return tallies


def _consistent(connection: Connection, read: Callable[[datetime | None], T]) -> T:
    """``read(watermark)`` such that no rollup write happened while it ran (the version
    is the same after as before): neither counted twice nor missed."""
    for _ in range(READ_TRIES):
        before = connection.execute(tq.read_watermark()).one()
        settled = None if before.settled_before is None else aware(before.settled_before)
        result = read(settled)
        if connection.execute(tq.read_watermark()).one().version == before.version:
            return result
        connection.rollback()  # PostgreSQL: end the transaction so the next read is fresh
    raise RuntimeError(f"the trend rollups changed under {READ_TRIES} reads in a row")


def _aggregate(
    connection: Connection,
    unit: Unit,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    *,
    rescues: bool = True,
) -> dict[Key, Tally]:
    """Finished jobs of ``jobs`` completed in [since, until), per bucket, type, tenant
    (``rescues=False``: without their lifeline rescues, which charts do not show)."""
    engine_ = engines.current()
    tallies: dict[Key, Tally] = {}

    def tally_of(row: Any) -> Tally:
        return tallies.setdefault((aware(row.bucket), row.type, row.tenant), Tally())

    query = tq.finished_counts(engine_, unit, since, until, tenant, rescues=rescues)
    for row in connection.execute(query):
        tally = tally_of(row)
        setattr(tally, row.status, getattr(tally, row.status) + int(row.jobs))
        tally.retries += int(row.retries or 0)
        tally.lost_executions += int(row.lost_executions or 0)
        tally.lifeline_rescues += int(row.lifeline_rescues or 0)
    for kind in ("wait", "run"):
        query = tq.duration_histogram(engine_, unit, kind, since, until, tenant)
        for row in connection.execute(query):
            tally = tally_of(row)
            histogram: dict[str, int] = getattr(tally, f"{kind}_histogram")
            merge_histograms(histogram, {str(row.histogram_bucket): int(row.jobs)})
            setattr(
                tally,
                f"{kind}_sum_seconds",
                getattr(tally, f"{kind}_sum_seconds") + float(row.seconds or 0),
            )
            if kind == "run":
                tally.timed += int(row.jobs)
    return tallies


def _type_trend(name: str, tally: Tally) -> TypeTrend:
    finished = tally.finished
    return TypeTrend(
        type=name,
        finished=finished,
        succeeded=tally.succeeded,
        partial=tally.partial,
        failed=tally.failed,
        canceled=tally.canceled,
        failure_rate=tally.failed / finished if finished else 0.0,
        retries=tally.retries,
        wait_p50=histogram_percentile(tally.wait_histogram, 0.50),
        wait_p95=histogram_percentile(tally.wait_histogram, 0.95),
        run_p50=histogram_percentile(tally.run_histogram, 0.50),
        run_p95=histogram_percentile(tally.run_histogram, 0.95),
    )


def _floor(moment: datetime, unit: Unit) -> datetime:
    moment = aware(moment).replace(second=0, microsecond=0)
    return moment.replace(minute=0) if unit == "hour" else moment
