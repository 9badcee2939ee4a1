"""lost executions of chain steps

The steps of a chained job get what jobs got in 0007: ``lost_executions`` (a step whose
process dies every time ends ``failed`` after ``JOBLEDGER_MAX_LOST_EXECUTIONS``), and
``worker``/``worker_pid`` of the execution now running (a second delivery asks whether
that worker is alive; the worker's main process names the pool process it lost).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, not a batch: SQLite (3.35+) does both in place, and a batch
    # would rebuild `job_steps` under the reporting views that read it.
    op.add_column(
        "job_steps",
        sa.Column("lost_executions", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("job_steps", sa.Column("worker", sa.String(length=256), nullable=True))
    op.add_column("job_steps", sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("job_steps", "worker_pid")
    op.drop_column("job_steps", "worker")
    op.drop_column("job_steps", "lost_executions")
