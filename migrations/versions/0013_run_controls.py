"""run controls: a job's priority, dead jobs (retries exhausted) and their view

- ``jobs.priority`` (SMALLINT, NULL for jobs recorded before priorities existed): 0
  (least urgent) to 9 (most urgent), the scale users give (``apply_async(priority=…)``,
  the API's ``priority``), not the broker's (``app.queues.broker_priority`` maps it).
- ``jobs.retries_exhausted`` (BOOLEAN, default false): the job failed after its retry
  policy's last attempt (``app.ledger.rules.retries``); a manual retry clears it.
- ``dead_jobs``: the failed jobs whose retries were exhausted, with their reason, attempts
  and queue (``GET /jobs?dead=true`` and ``jobledger jobs --dead`` read the same rows).

SQLite: plain ``ADD COLUMN`` in place (as 0007), not a batch copy of ``jobs`` under the
reporting views that read it; the view is the same SQL on both databases.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DEAD_JOBS = """
    SELECT id, name, type, tenant, subject, queue, priority, attempts, failure_reason, errors,
           worker, trigger, created_at, started_at, completed_at
    FROM jobs
    WHERE status = 'failed' AND retries_exhausted
"""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("priority", sa.SmallInteger(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column(
            "retries_exhausted", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.execute(f"CREATE VIEW dead_jobs AS {DEAD_JOBS}")


def downgrade() -> None:
    op.execute("DROP VIEW dead_jobs")
    op.drop_column("jobs", "retries_exhausted")
    op.drop_column("jobs", "priority")
