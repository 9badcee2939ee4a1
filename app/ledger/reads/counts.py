"""Status counts that stay fast at tens of millions of jobs: settled counts plus a small
live remainder, read in one statement.

Counting ``jobs`` per type and status reads every row (at 1M jobs ``GROUP BY status``
already takes 60 to 200 ms on two cores; an index does not change that). Yet almost every
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
(the embedded default, small by nature) counts are read straight from ``jobs``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from app.db import engine, in_transaction, is_postgresql
from app.ledger.rules.states import LIVE, TERMINAL

#: How far behind ``now()`` the watermark stays (see the module docstring).
SETTLE_MARGIN = timedelta(minutes=1)

_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
_LIVE = ", ".join(f"'{s.value}'" for s in sorted(LIVE))

# Settle: count the finished jobs of [watermark, upto) into their hours and into the
# totals, then move the watermark (separate statement, same transaction).
_LOCK_WATERMARK = text(
    "SELECT settled_before FROM job_status_counts_watermark WHERE id = 1 FOR UPDATE"
)
_SETTLE = text(f"""
WITH fresh AS (
    SELECT tenant, type, status, date_trunc('hour', created_at, 'UTC') AS created_hour,
           count(*) AS jobs
    FROM jobs
    WHERE status IN ({_TERMINAL}) AND completed_at >= :since AND completed_at < :upto
    GROUP BY 1, 2, 3, 4
), hours AS (
    INSERT INTO job_status_counts (tenant, type, status, created_hour, jobs)
    SELECT tenant, type, status, created_hour, jobs FROM fresh
    ON CONFLICT (tenant, type, status, created_hour)
    DO UPDATE SET jobs = job_status_counts.jobs + excluded.jobs
), totals AS (
    INSERT INTO job_status_totals (tenant, type, status, jobs)
    SELECT tenant, type, status, sum(jobs) FROM fresh GROUP BY 1, 2, 3
    ON CONFLICT (tenant, type, status)
    DO UPDATE SET jobs = job_status_totals.jobs + excluded.jobs
)
SELECT coalesce(sum(jobs), 0) FROM fresh
""")
_MOVE_WATERMARK = text(
    "UPDATE job_status_counts_watermark SET settled_before = :upto, updated_at = now() WHERE id = 1"
)
_DROP_EMPTY = (
    text("DELETE FROM job_status_counts WHERE jobs <= 0"),
    text("DELETE FROM job_status_totals WHERE jobs <= 0"),
)
_FORGET_ALL = (text("DELETE FROM job_status_counts"), text("DELETE FROM job_status_totals"))

# Read, in one snapshot: the watermark, then settled counts plus the rest. The watermark is
# bound as a value (not joined) so the planner sees how few rows lie past it.
_READ_WATERMARK = text("SELECT settled_before FROM job_status_counts_watermark WHERE id = 1")
_TENANT = "(CAST(:tenant AS text) IS NULL OR tenant = :tenant)"
_REST = f"""
    SELECT type, status, 1 AS jobs FROM jobs
    WHERE (status IN ({_LIVE}) OR completed_at IS NULL OR completed_at >= :settled)
      AND {_TENANT} AND created_at >= :since
"""
_COUNTS_ALL_TIME = text(f"""
SELECT type, status, sum(jobs) AS jobs FROM (
    SELECT type, status, jobs FROM job_status_totals WHERE {_TENANT}
    UNION ALL {_REST}
) AS parts GROUP BY type, status HAVING sum(jobs) > 0
""")
_COUNTS_SINCE = text(f"""
SELECT type, status, sum(jobs) AS jobs FROM (
    SELECT type, status, jobs FROM job_status_counts
    WHERE {_TENANT} AND created_hour >= :whole_hours_from
    UNION ALL
    SELECT type, status, 1 FROM jobs
    WHERE created_at >= :since AND created_at < :whole_hours_from
      AND status IN ({_TERMINAL}) AND completed_at < :settled AND {_TENANT}
    UNION ALL {_REST}
) AS parts GROUP BY type, status HAVING sum(jobs) > 0
""")
_NAIVE_COUNTS = text("""
SELECT type, status, count(*) AS jobs FROM jobs
WHERE (:tenant IS NULL OR tenant = :tenant) AND (:since IS NULL OR created_at >= :since)
GROUP BY type, status
""")
#: ``since`` when none is given (every job was created after it).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def settle(margin: timedelta = SETTLE_MARGIN) -> int:
    """Count the jobs finished since the last settle (up to ``now() - margin``) into
    ``job_status_counts``; returns how many. Safe to run concurrently and repeatedly:
    settles serialise on the watermark row and each one starts where the last ended."""
    if not is_postgresql():
        return 0
    return in_transaction(lambda c: _settle(c, margin), "settling status counts")


def rebuild(margin: timedelta = SETTLE_MARGIN) -> int:
    """Forget every settled count and settle again from the whole ``jobs`` table."""
    if not is_postgresql():
        return 0

    def work(connection: Connection) -> int:
        connection.execute(_LOCK_WATERMARK)
        for statement in _FORGET_ALL:
            connection.execute(statement)
        connection.execute(_MOVE_WATERMARK, {"upto": _EPOCH})
        return _settle(connection, margin)

    return in_transaction(work, "rebuilding status counts")


def _settle(connection: Connection, margin: timedelta) -> int:
    since = connection.execute(_LOCK_WATERMARK).scalar_one()
    upto = connection.execute(text("SELECT now() - :margin"), {"margin": margin}).scalar_one()
    if upto <= since:
        return 0
    added = int(connection.execute(_SETTLE, {"since": since, "upto": upto}).scalar_one())
    connection.execute(_MOVE_WATERMARK, {"upto": upto})
    for statement in _DROP_EMPTY:  # rows whose every job was purged or retried
        connection.execute(statement)
    return added


def status_counts(*, tenant: str | None = None, since: datetime | None = None) -> list[Any]:
    """``(type, status, jobs)`` rows of the jobs of ``tenant`` created at or after
    ``since`` (both optional), exactly, however many jobs the ledger holds."""
    if not is_postgresql():
        with engine().connect() as connection:
            return list(connection.execute(_NAIVE_COUNTS, {"tenant": tenant, "since": since}))
    read = engine().execution_options(isolation_level="REPEATABLE READ")
    with read.connect() as connection, connection.begin():  # one snapshot for all parts
        settled = connection.execute(_READ_WATERMARK).scalar_one()
        if since is None:
            params = {"tenant": tenant, "settled": settled, "since": _EPOCH}
            return list(connection.execute(_COUNTS_ALL_TIME, params))
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)  # naive: UTC
        hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        whole_hours_from = hour if hour == moment else hour + timedelta(hours=1)
        params = {
            "tenant": tenant,
            "settled": settled,
            "since": moment,
            "whole_hours_from": whole_hours_from,
        }
        return list(connection.execute(_COUNTS_SINCE, params))
