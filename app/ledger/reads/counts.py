"""Status counts that stay fast at tens of millions of jobs: settled counts plus a small
live remainder, read in one statement.

Counting ``jobs`` per type and status reads every row, and its time grows with the table
(an index does not change that; benchmarks/RESULTS.md, "Reporting"). Yet almost every
job is finished, and a finished job's status changes only when it is purged or retried.
So (PostgreSQL):

- ``settle()`` (beat, every ``JOBLEDGER_SETTLE_INTERVAL`` seconds) adds the finished jobs
  whose ``completed_at`` lies between the watermark and ``now() - SETTLE_MARGIN`` to
  ``job_status_counts`` (tenant, type, status, UTC hour of creation) and to
  ``job_status_totals`` (the same without the hour), and moves the watermark there, in
  one transaction holding the watermark row ``FOR UPDATE``;
- :func:`status_counts` adds the settled counts (the totals; with ``since``, the hours
  from ``since`` on plus the settled jobs of the hour it falls in) to a count of the rest:
  live jobs (the partial index ``ix_jobs_live``), jobs without ``completed_at`` and jobs
  finished since the watermark (``ix_jobs_completed_at``). One REPEATABLE READ
  transaction, so the watermark and both parts are one snapshot; the watermark is bound
  as a value so the planner sees how few rows lie past it;
- triggers (migration 0004) take a settled job back out when it is deleted (purge,
  cascade) or leaves its final status (manual retry); they read the watermark ``FOR
  SHARE``, so they wait for a settle in progress and then see where it ended.

The margin: a job finished by a transaction still open when settling passes its
``completed_at`` would be counted by neither part. Ledger transactions last milliseconds;
the margin is a minute. ``rebuild()`` (``jobledger counts --rebuild``) recounts from the
jobs table should anything ever drift; the tests compare against a naive count.

Not on the hot path: no per-job write, no trigger on a job's normal transitions. On SQLite
(the embedded default, small by nature) counts are read straight from ``jobs``. The
statements are the engines' (:mod:`app.ledger.engines.counts_queries`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.ledger import engines

#: How far behind ``now()`` the watermark stays (see the module docstring).
SETTLE_MARGIN = timedelta(minutes=1)


def settle(margin: timedelta = SETTLE_MARGIN) -> int:
    """Count the jobs finished since the last settle (up to ``now() - margin``) into
    ``job_status_counts``; returns how many. Safe to run concurrently and repeatedly:
    settles serialise on the watermark row and each one starts where the last ended."""
    return engines.current().settle_counts(margin)


def rebuild(margin: timedelta = SETTLE_MARGIN) -> int:
    """Forget every settled count and settle again from the whole ``jobs`` table."""
    return engines.current().rebuild_counts(margin)


def status_counts(*, tenant: str | None = None, since: datetime | None = None) -> list[Any]:
    """``(type, status, jobs)`` rows of the jobs of ``tenant`` created at or after
    ``since`` (both optional), exactly, however many jobs the ledger holds."""
    return engines.current().status_counts(tenant=tenant, since=since)


def status_counts_per_tenant() -> list[Any]:
    """``(tenant, type, status, jobs)`` rows of every job the ledger holds, exactly (the
    same settled counts plus live remainder, per tenant: the operator's ``/metrics``)."""
    return engines.current().status_counts_per_tenant()
