"""idempotency keys of created jobs, and the dashboard's server-side sessions

``jobs.idempotency_key`` (with ``jobs.request_digest``, the SHA-256 of the request it
came with) lets a client that retries ``POST /jobs`` (``Idempotency-Key``) or a producer
(``apply_async(idempotency_key=…)``) get the job it already created instead of a
duplicate; the unique index per tenant makes that hold across API processes, restarts
and concurrent retries.

``dashboard_sessions`` holds one row per dashboard login: the SHA-256 of the session
token (the cookie holds the token, the ledger only its digest), the digest of the API key
that logged in (a key removed from ``JOBLEDGER_API_KEYS`` ends its sessions), and when
it was created, expires and was revoked (logout).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(length=255), nullable=True))
    op.add_column("jobs", sa.Column("request_digest", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_jobs_tenant_idempotency_key", "jobs", ["tenant", "idempotency_key"], unique=True
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("key_name", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_digest", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(
        "ix_dashboard_sessions_expires_at", "dashboard_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires_at", table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_index("ix_jobs_tenant_idempotency_key", table_name="jobs")
    # plain DROP COLUMN (SQLite >= 3.35 has it): a batch rebuild of ``jobs`` would break
    # the reporting views that read it
    op.drop_column("jobs", "request_digest")
    op.drop_column("jobs", "idempotency_key")
