"""hourly trend rollups

``job_hourly_rollups`` (per UTC hour of ``completed_at``, type and tenant) and
``job_trend_totals`` (the same summed over the hours) hold the finished jobs older than
``job_trend_watermark.settled_before``, and those the purge deleted before that: counts per
final status, retries, lost executions, and queue wait and run duration histograms. The
charts and ``/metrics`` read them plus the jobs past the watermark
(:mod:`app.ledger.reads.trends`). The watermark starts NULL (nothing rolled up): the first
``settle_counts`` run rolls up every finished job the ledger holds.

Plain tables on both databases: no trigger, nothing on the per-job hot path.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _counts() -> list[sa.Column[object]]:
    """The columns an hourly row and a total share (models/trends.py ``_TrendCounts``)."""
    zero = sa.text("0")
    return [
        *(
            sa.Column(name, sa.BigInteger(), server_default=zero, nullable=False)
            for name in ("succeeded", "partial", "failed", "canceled", "retries")
        ),
        sa.Column("lost_executions", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("timed", sa.BigInteger(), server_default=zero, nullable=False),
        sa.Column("wait_sum_seconds", sa.Float(), server_default=zero, nullable=False),
        sa.Column("run_sum_seconds", sa.Float(), server_default=zero, nullable=False),
        sa.Column("wait_histogram", Json, server_default=sa.text("'{}'"), nullable=False),
        sa.Column("run_histogram", Json, server_default=sa.text("'{}'"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "job_hourly_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        *_counts(),
        sa.PrimaryKeyConstraint("hour", "type", "tenant", name=op.f("pk_job_hourly_rollups")),
    )
    op.create_table(
        "job_trend_totals",
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        *_counts(),
        sa.PrimaryKeyConstraint("type", "tenant", name=op.f("pk_job_trend_totals")),
    )
    op.create_table(
        "job_trend_watermark",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("settled_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_job_trend_watermark_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_trend_watermark")),
    )
    op.execute("INSERT INTO job_trend_watermark (id, settled_before, version) VALUES (1, NULL, 0)")


def downgrade() -> None:
    op.drop_table("job_trend_watermark")
    op.drop_table("job_trend_totals")
    op.drop_table("job_hourly_rollups")
