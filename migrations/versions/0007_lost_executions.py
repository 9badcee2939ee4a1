"""lost executions and the pool process of a running job

``jobs.lost_executions`` counts the executions of a job that ended without an outcome
(their process or whole worker died); at ``JOBLEDGER_MAX_LOST_EXECUTIONS`` the next
delivery fails the job instead of running it (a poison message). ``jobs.worker_pid`` is
the pool process of the current execution: the worker's main process names the one it
lost, and records that loss only if that process still runs the job.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, not a batch: SQLite (3.35+) does both in place, and a batch
    # would rebuild `jobs` under the reporting views that read it.
    op.add_column(
        "jobs",
        sa.Column("lost_executions", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("jobs", sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "worker_pid")
    op.drop_column("jobs", "lost_executions")
