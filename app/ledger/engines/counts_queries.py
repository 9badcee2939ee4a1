"""The statements of the status counts (:mod:`app.ledger.reads.counts` says how they
work): settled counts plus a live remainder on PostgreSQL, a plain count elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from app.ledger.rules.states import LIVE, TERMINAL

_TERMINAL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
_LIVE = ", ".join(f"'{s.value}'" for s in sorted(LIVE))

# Settle: count the finished jobs of [watermark, upto) into their hours and into the
# totals, then move the watermark (separate statement, same transaction).
LOCK_WATERMARK = text(
    "SELECT settled_before FROM job_status_counts_watermark WHERE id = 1 FOR UPDATE"
)
SETTLE = text(f"""
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
MOVE_WATERMARK = text(
    "UPDATE job_status_counts_watermark SET settled_before = :upto, updated_at = now() WHERE id = 1"
)
DROP_EMPTY = (
    text("DELETE FROM job_status_counts WHERE jobs <= 0"),
    text("DELETE FROM job_status_totals WHERE jobs <= 0"),
)
FORGET_ALL = (text("DELETE FROM job_status_counts"), text("DELETE FROM job_status_totals"))

# Read, in one snapshot: the watermark, then settled counts plus the rest. The watermark is
# bound as a value (not joined) so the planner sees how few rows lie past it.
READ_WATERMARK = text("SELECT settled_before FROM job_status_counts_watermark WHERE id = 1")
_TENANT = "(CAST(:tenant AS text) IS NULL OR tenant = :tenant)"
_REST = f"""
    SELECT type, status, 1 AS jobs FROM jobs
    WHERE (status IN ({_LIVE}) OR completed_at IS NULL OR completed_at >= :settled)
      AND {_TENANT} AND created_at >= :since
"""
COUNTS_ALL_TIME = text(f"""
SELECT type, status, sum(jobs) AS jobs FROM (
    SELECT type, status, jobs FROM job_status_totals WHERE {_TENANT}
    UNION ALL {_REST}
) AS parts GROUP BY type, status HAVING sum(jobs) > 0
""")
COUNTS_SINCE = text(f"""
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
COUNTS_PER_TENANT = text(f"""
SELECT tenant, type, status, sum(jobs) AS jobs FROM (
    SELECT tenant, type, status, jobs FROM job_status_totals
    UNION ALL
    SELECT tenant, type, status, 1 AS jobs FROM jobs
    WHERE status IN ({_LIVE}) OR completed_at IS NULL OR completed_at >= :settled
) AS parts GROUP BY tenant, type, status HAVING sum(jobs) > 0
""")
NAIVE_COUNTS_PER_TENANT = text(
    "SELECT tenant, type, status, count(*) AS jobs FROM jobs GROUP BY tenant, type, status"
)
NAIVE_COUNTS = text("""
SELECT type, status, count(*) AS jobs FROM jobs
WHERE (:tenant IS NULL OR tenant = :tenant) AND (:since IS NULL OR created_at >= :since)
GROUP BY type, status
""")
#: ``since`` when none is given (every job was created after it).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
