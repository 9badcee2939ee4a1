"""console: bulk operations, who acted, search index, dashboard session roles

- ``job_operations``: one row per named bulk cancel or retry (unique per tenant and name).
- ``jobs.operation_id``: the last bulk operation that acted on the job;
  ``job_events.operation_id``: the operation an event belongs to;
  ``job_events.actor_name``: the API key's name (or operator) behind an ``api``/``cli``
  event. Plain columns, not foreign keys: events are append-only (see models/operations.py).
- ``ix_jobs_tenant_status_created_at``: a tenant's jobs in some statuses, newest first.
- ``dashboard_sessions.role``: the key's role at login (existing sessions: ``admin``,
  what a key without a role may do).

SQLite: plain ``ADD COLUMN`` and ``CREATE INDEX`` (in place, no copy of ``jobs`` under
the reporting views).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_operations",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("matched", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("skipped", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'running'"), nullable=False
        ),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("action IN ('cancel', 'retry')", name="ck_job_operations_action"),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed')", name="ck_job_operations_status"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_job_operations"),
        sa.UniqueConstraint("tenant", "name", name="uq_job_operations_tenant_name"),
    )
    op.create_index(
        "ix_job_operations_tenant_created_at", "job_operations", ["tenant", "created_at"]
    )
    op.add_column("jobs", sa.Column("operation_id", BigId, nullable=True))
    op.create_index("ix_jobs_operation_id", "jobs", ["operation_id"])
    op.create_index("ix_jobs_tenant_status_created_at", "jobs", ["tenant", "status", "created_at"])
    op.add_column("job_events", sa.Column("actor_name", sa.String(length=128), nullable=True))
    op.add_column("job_events", sa.Column("operation_id", BigId, nullable=True))
    op.add_column(
        "dashboard_sessions",
        sa.Column("role", sa.String(length=16), server_default="admin", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("dashboard_sessions", "role")
    op.drop_column("job_events", "operation_id")
    op.drop_column("job_events", "actor_name")
    op.drop_index("ix_jobs_tenant_status_created_at", table_name="jobs")
    op.drop_index("ix_jobs_operation_id", table_name="jobs")
    op.drop_column("jobs", "operation_id")
    op.drop_index("ix_job_operations_tenant_created_at", table_name="job_operations")
    op.drop_table("job_operations")
