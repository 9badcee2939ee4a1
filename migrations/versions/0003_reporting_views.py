"""reporting views and daily rollups

The table ``job_daily_rollups`` keeps what the retention purge folds away (counts per
final status, duration histogram and p50/p95 per UTC day, type and tenant). The views
read the ledger for reports (``jobledger report``, psql, exports):

- ``report_status_counts``: jobs per tenant, type and status.
- ``report_daily_summary``: per UTC day of ``completed_at`` and type: total, succeeded,
  failed, partial, canceled, p50/p95 duration in seconds (nearest rank).
- ``report_daily_history``: the same per day, type and tenant from the rollups (purged
  jobs, ``source = 'rollup'``) and from the ledger (``source = 'ledger'``); sum the two
  sources for a day the purge has cut through.
- ``report_recent_failures``: failed jobs of the last 7 days with their reasons.
- ``report_step_durations``: each step of a chained job with its duration.

The SQL is the same on PostgreSQL and SQLite except the day and duration expressions;
percentiles use window functions (``ROW_NUMBER`` over the timed jobs, the first value
whose rank reaches p·n), which both support, instead of PostgreSQL's ``percentile_cont``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

VIEWS = (
    "report_status_counts",
    "report_daily_summary",
    "report_daily_history",
    "report_recent_failures",
    "report_step_durations",
)
TERMINAL = "('succeeded', 'partial', 'failed', 'canceled')"


def _expressions(dialect: str) -> dict[str, str]:
    if dialect == "postgresql":
        return {
            "day": "CAST(timezone('UTC', completed_at) AS date)",
            "seconds": "EXTRACT(EPOCH FROM completed_at - started_at)",
            "step_seconds": "EXTRACT(EPOCH FROM s.completed_at - s.started_at)",
            "week_ago": "now() - interval '7 days'",
        }
    return {
        "day": "date(completed_at)",
        "seconds": "(julianday(completed_at) - julianday(started_at)) * 86400.0",
        "step_seconds": "(julianday(s.completed_at) - julianday(s.started_at)) * 86400.0",
        "week_ago": "datetime('now', '-7 days')",
    }


def _daily(e: dict[str, str], groups: str, extra: str = "") -> str:
    """Counts per final status and nearest-rank p50/p95 of finished jobs per ``groups``."""
    return f"""
    WITH finished AS (
        SELECT {e["day"]} AS day, type, tenant, status, {e["seconds"]} AS seconds
        FROM jobs
        WHERE status IN {TERMINAL} AND completed_at IS NOT NULL
    ),
    ranked AS (
        SELECT finished.*,
               ROW_NUMBER() OVER (
                   PARTITION BY {groups}, (seconds IS NULL) ORDER BY seconds
               ) AS rank_in_group,
               COUNT(seconds) OVER (PARTITION BY {groups}) AS timed
        FROM finished
    )
    SELECT {groups},
           COUNT(*) AS total,
           SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
           SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
           SUM(CASE WHEN status = 'partial' THEN 1 ELSE 0 END) AS partial,
           SUM(CASE WHEN status = 'canceled' THEN 1 ELSE 0 END) AS canceled,
           MIN(CASE WHEN seconds IS NOT NULL AND rank_in_group >= 0.5 * timed
                    THEN seconds END) AS p50_seconds,
           MIN(CASE WHEN seconds IS NOT NULL AND rank_in_group >= 0.95 * timed
                    THEN seconds END) AS p95_seconds{extra}
    FROM ranked
    GROUP BY {groups}
    """


def _views(dialect: str) -> dict[str, str]:
    e = _expressions(dialect)
    return {
        "report_status_counts": """
            SELECT tenant, type, status, COUNT(*) AS jobs,
                   MIN(created_at) AS oldest_created_at, MAX(updated_at) AS last_updated_at
            FROM jobs
            GROUP BY tenant, type, status
        """,
        "report_daily_summary": _daily(e, "day, type"),
        "report_daily_history": f"""
            SELECT day, type, tenant, total, succeeded, failed, partial, canceled,
                   p50_seconds, p95_seconds, 'rollup' AS source
            FROM job_daily_rollups
            UNION ALL
            SELECT * FROM ({_daily(e, "day, type, tenant", ", 'ledger' AS source")}) AS live
        """,
        "report_recent_failures": f"""
            SELECT id, name, type, tenant, subject, failure_reason, errors, attempts, worker,
                   trigger, created_at, completed_at
            FROM jobs
            WHERE status = 'failed' AND completed_at >= {e["week_ago"]}
        """,
        "report_step_durations": f"""
            SELECT j.id AS job_id, j.name AS job_name, j.type AS job_type, j.tenant,
                   s.position, s.step_type, s.status, s.attempts, s.started_at,
                   s.completed_at, {e["step_seconds"]} AS seconds, s.failure_reason
            FROM job_steps AS s
            JOIN jobs AS j ON j.id = s.job_id
        """,
    }


def upgrade() -> None:
    op.create_table(
        "job_daily_rollups",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("succeeded", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("partial", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("canceled", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("timed", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("duration_sum_seconds", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("p50_seconds", sa.Float(), nullable=True),
        sa.Column("p95_seconds", sa.Float(), nullable=True),
        sa.Column(
            "histogram",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("day", "type", "tenant", name=op.f("pk_job_daily_rollups")),
    )
    for name, sql in _views(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("job_daily_rollups")
