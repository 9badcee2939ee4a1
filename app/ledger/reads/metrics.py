"""The ledger as Prometheus metrics: one custom collector that reads the ledger at each
scrape (``GET /metrics``, :mod:`app.api.metrics`).

Why a collector and not counters kept in memory: the API process does not see the
workers' jobs, a restart would reset in-memory counters, and the purge would make
``count(*)`` counters go backwards. Everything here is read from the ledger when
Prometheus asks: finishes, durations, retries and rescues from the hourly trend rollups
(:mod:`app.ledger.reads.trends`: never deleted, so a purge changes none of them) plus the
jobs past their watermark; the jobs the ledger holds now from the settled status counts
(:mod:`app.ledger.reads.counts`); write retries from the ``write_retries`` ledger counter.
So every process that serves ``/metrics`` answers the same numbers, and they never reset.

The metrics (docs/operations.md, "Metrics", says what each one means):

- ``jobledger_jobs{tenant,type,status}``: jobs in the ledger now (gauge; the purge lowers it)
- ``jobledger_live_jobs{tenant,type,status}``: queued, running, retrying jobs (gauge)
- ``jobledger_jobs_finished_total{tenant,type,status}``: finishes ever (counter)
- ``jobledger_job_queue_wait_seconds{tenant,type}``, ``jobledger_job_run_seconds{tenant,type}``:
  histograms of the finished jobs that started
- ``jobledger_job_retries_total``, ``jobledger_job_lost_executions_total``,
  ``jobledger_lifeline_rescues_total`` ``{tenant,type}``: counters, finished and live jobs
- ``jobledger_purge_running``, ``jobledger_purge_progress_ratio``,
  ``jobledger_purge_last_success_timestamp_seconds``, ``jobledger_purge_last_deleted_jobs``
- ``jobledger_ledger_write_retries_total``: ledger writes tried again (counter)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.db import engine
from app.ledger.engines.base import aware
from app.ledger.engines.counter_queries import WRITE_RETRIES, read_counter
from app.ledger.reads import counts, reports, trends
from app.ledger.rules.durations import BUCKET_BASE, bucket_upper_seconds

#: Round durations the histogram buckets stand near (seconds). Each ``le`` is the upper
#: edge of the ledger's 10 % duration bucket nearest to one of them (within 5 %): the
#: rollups keep those buckets, so a count ``<= le`` is exact, not interpolated.
NEAR = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: The ledger buckets whose upper edges are the ``le`` of the histograms.
EDGES = tuple(round(math.log(near * 1000, BUCKET_BASE)) for near in NEAR)
LABELS = ["tenant", "type"]


def le_of(bucket: int) -> str:
    """The ``le`` label of the ledger bucket ``bucket``'s upper edge."""
    return f"{bucket_upper_seconds(bucket):.6g}"


def cumulative(histogram: Mapping[str, int], total: int) -> list[tuple[str, float]]:
    """Prometheus buckets of a ledger histogram: how many durations lie in a ledger bucket
    at or below each edge (so ``<= le``), then ``+Inf`` = all of them."""
    counts_at = sorted((int(bucket), count) for bucket, count in histogram.items())
    buckets: list[tuple[str, float]] = []
    for edge in EDGES:
        buckets.append((le_of(edge), float(sum(c for b, c in counts_at if b <= edge))))
    buckets.append(("+Inf", float(total)))
    return buckets


class LedgerCollector(Collector):
    """Reads the ledger at each scrape and yields every ``jobledger_*`` metric."""

    def collect(self) -> Iterator[Metric]:
        live = trends.live()
        yield from self._job_counts(live)
        yield from self._finished(live)
        yield from self._purge()
        with engine().connect() as connection:
            retries = int(connection.execute(read_counter(WRITE_RETRIES)).scalar() or 0)
        written = CounterMetricFamily(
            "jobledger_ledger_write_retries",
            "Ledger writes tried again after a lost connection or a locked database.",
        )
        written.add_metric([], float(retries))
        yield written

    def _job_counts(self, live_jobs: Mapping[Any, trends.LiveJobs]) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "jobledger_jobs",
            "Jobs in the ledger now, by status (the purge lowers it).",
            labels=["tenant", "type", "status"],
        )
        for row in counts.status_counts_per_tenant():
            held.add_metric([row.tenant, row.type, row.status], float(row.jobs))
        yield held
        live = GaugeMetricFamily(
            "jobledger_live_jobs",
            "Jobs queued, running or retrying now.",
            labels=["tenant", "type", "status"],
        )
        for (tenant, job_type, status), jobs in sorted(live_jobs.items()):
            live.add_metric([tenant, job_type, status], float(jobs.jobs))
        yield live

    def _finished(self, live_jobs: Mapping[Any, trends.LiveJobs]) -> Iterator[Metric]:
        finished = CounterMetricFamily(
            "jobledger_jobs_finished",
            "Jobs that finished, by final status, since the ledger began (purged ones too).",
            labels=["tenant", "type", "status"],
        )
        wait = HistogramMetricFamily(
            "jobledger_job_queue_wait_seconds",
            "Queue wait (started_at - created_at) of the finished jobs that started.",
            labels=LABELS,
        )
        run = HistogramMetricFamily(
            "jobledger_job_run_seconds",
            "Run duration (completed_at - started_at) of the finished jobs that started.",
            labels=LABELS,
        )
        families = {
            name: CounterMetricFamily(f"jobledger_{name}", text, labels=LABELS)
            for name, text in (
                (
                    "job_retries",
                    "Starts beyond each job's first (Celery retries, lost executions).",
                ),
                ("job_lost_executions", "Executions that ended without an outcome."),
                (
                    "lifeline_rescues",
                    "Lifeline actions on jobs (orphans failed or re-queued, "
                    "lost executions recorded, jobs without a message failed).",
                ),
            )
        }
        per_type: dict[tuple[str, str], dict[str, int]] = {}
        for (tenant, job_type), tally in sorted(trends.totals().items()):
            labels = [tenant, job_type]
            for status in trends.STATUSES:
                finished.add_metric([*labels, status], float(getattr(tally, status)))
            wait.add_metric(
                labels, cumulative(tally.wait_histogram, tally.timed), tally.wait_sum_seconds
            )
            run.add_metric(
                labels, cumulative(tally.run_histogram, tally.timed), tally.run_sum_seconds
            )
            per_type[(tenant, job_type)] = _events(tally)
        for (tenant, job_type, _status), jobs in live_jobs.items():
            found = per_type.setdefault((tenant, job_type), _events(None))
            for name, value in _events(jobs).items():
                found[name] += value
        for (tenant, job_type), values in sorted(per_type.items()):
            for name, value in values.items():
                families[name].add_metric([tenant, job_type], float(value))
        yield finished
        yield wait
        yield run
        yield from families.values()

    def _purge(self) -> Iterator[Metric]:
        running = reports.list_jobs(
            reports.JobFilter(type="purge", status=("running",)), limit=1
        ).items
        done = reports.list_jobs(
            reports.JobFilter(type="purge", status=("succeeded",)), limit=1
        ).items
        is_running = GaugeMetricFamily(
            "jobledger_purge_running", "1 while a retention purge runs, else 0."
        )
        is_running.add_metric([], 1.0 if running else 0.0)
        yield is_running
        progress = GaugeMetricFamily(
            "jobledger_purge_progress_ratio",
            "Share of its candidates the running purge has deleted (1 when none runs).",
        )
        progress.add_metric([], running[0]["progress"] / 100 if running else 1.0)
        yield progress
        if done:
            last = done[0]
            when = GaugeMetricFamily(
                "jobledger_purge_last_success_timestamp_seconds",
                "When the last successful purge finished (Unix time).",
            )
            when.add_metric([], aware(last["completed_at"]).timestamp())
            yield when
            result = reports.job_detail(last["id"]).job.get("result") or {}
            deleted = GaugeMetricFamily(
                "jobledger_purge_last_deleted_jobs", "Jobs the last successful purge deleted."
            )
            deleted.add_metric([], float(result.get("deleted", 0)))
            yield deleted


def _events(found: Any) -> dict[str, int]:
    """Retries, lost executions and lifeline rescues of a tally or live jobs (0 for None)."""
    return {
        "job_retries": getattr(found, "retries", 0),
        "job_lost_executions": getattr(found, "lost_executions", 0),
        "lifeline_rescues": getattr(found, "lifeline_rescues", 0),
    }
