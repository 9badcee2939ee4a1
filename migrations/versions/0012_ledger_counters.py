"""lifeline rescues in the trend rollups, ledger counters

- ``job_hourly_rollups.lifeline_rescues`` and ``job_trend_totals.lifeline_rescues``: the
  events the lifeline wrote about the rolled-up jobs (``/metrics``'
  ``jobledger_lifeline_rescues_total``). Rows rolled up before this migration count 0:
  their events are not read again (those still in ``jobs`` past the watermark are).
- ``ledger_counters``: counts that only grow and must survive restarts; its one row
  ``write_retries`` counts ledger writes tried again (``app.db``), for ``/metrics``.

SQLite: ``ADD COLUMN`` with a constant default, in place.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ROLLUP_TABLES = ("job_hourly_rollups", "job_trend_totals")


def upgrade() -> None:
    for table in ROLLUP_TABLES:
        op.add_column(
            table,
            sa.Column(
                "lifeline_rescues", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            ),
        )
    op.create_table(
        "ledger_counters",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_ledger_counters")),
    )
    op.execute("INSERT INTO ledger_counters (name, value) VALUES ('write_retries', 0)")


def downgrade() -> None:
    op.drop_table("ledger_counters")
    for table in ROLLUP_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lifeline_rescues")
