"""settled status counts

``job_status_counts`` holds the counts of finished jobs whose ``completed_at`` is before
``job_status_counts_watermark.settled_before``, per tenant, type, final status and UTC
hour of creation; ``job_status_totals`` the same summed over the hours (see
:mod:`app.ledger.reads.counts`). The watermark starts at 1970: nothing is
settled until the first ``settle`` (beat runs it every minute).

On PostgreSQL two triggers keep settled counts true when a settled job changes outside
settling: a statement-level trigger on DELETE (the purge, and cascades) and a row-level
trigger on an UPDATE that takes a job out of a final status (a manual retry). The
per-job hot path never fires them: its updates never leave a final status.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TERMINAL = "('succeeded', 'partial', 'failed', 'canceled')"

#: Take settled jobs back out of the counts: ``gone`` holds the rows leaving (deleted,
#: or as they were before leaving a final status). Reads the watermark FOR SHARE, so it
#: waits for a settle in progress and then sees where it ended (see app.ledger.reads.counts).
FORGET = f"""
CREATE FUNCTION job_status_counts_forget(gone_tenant text, gone_type text,
                                         gone_status text, gone_hour timestamptz,
                                         gone_jobs bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE job_status_counts
    SET jobs = jobs - gone_jobs
    WHERE tenant = gone_tenant AND type = gone_type AND status = gone_status
      AND created_hour = gone_hour;
    UPDATE job_status_totals
    SET jobs = jobs - gone_jobs
    WHERE tenant = gone_tenant AND type = gone_type AND status = gone_status;
$$;

CREATE FUNCTION job_status_counts_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    settled timestamptz;
BEGIN
    SELECT settled_before INTO settled FROM job_status_counts_watermark WHERE id = 1 FOR SHARE;
    PERFORM job_status_counts_forget(tenant, type, status, hour, n)
    FROM (
        SELECT tenant, type, status, date_trunc('hour', created_at, 'UTC') AS hour,
               count(*) AS n
        FROM gone
        WHERE status IN {TERMINAL} AND completed_at < settled
        GROUP BY 1, 2, 3, 4
    ) AS settled_gone;
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_status_counts_on_reopen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    settled timestamptz;
BEGIN
    SELECT settled_before INTO settled FROM job_status_counts_watermark WHERE id = 1 FOR SHARE;
    IF OLD.completed_at < settled THEN
        PERFORM job_status_counts_forget(OLD.tenant, OLD.type, OLD.status,
                                         date_trunc('hour', OLD.created_at, 'UTC'), 1);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_status_counts_deleted AFTER DELETE ON jobs
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
EXECUTE FUNCTION job_status_counts_on_delete();

CREATE TRIGGER job_status_counts_reopened AFTER UPDATE ON jobs
FOR EACH ROW WHEN (OLD.status IN {TERMINAL} AND NEW.status NOT IN {TERMINAL})
EXECUTE FUNCTION job_status_counts_on_reopen();
"""


def upgrade() -> None:
    op.create_table(
        "job_status_counts",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "type", "status", "created_hour", name=op.f("pk_job_status_counts")
        ),
    )
    op.create_table(
        "job_status_totals",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "type", "status", name=op.f("pk_job_status_totals")),
    )
    op.create_table(
        "job_status_counts_watermark",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("settled_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_job_status_counts_watermark_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_status_counts_watermark")),
    )
    op.execute(
        "INSERT INTO job_status_counts_watermark (id, settled_before) "
        "VALUES (1, '1970-01-01 00:00:00+00')"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FORGET)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS job_status_counts_reopened ON jobs")
        op.execute("DROP TRIGGER IF EXISTS job_status_counts_deleted ON jobs")
        op.execute("DROP FUNCTION IF EXISTS job_status_counts_on_reopen()")
        op.execute("DROP FUNCTION IF EXISTS job_status_counts_on_delete()")
        op.execute(
            "DROP FUNCTION IF EXISTS job_status_counts_forget(text, text, text, timestamptz, bigint)"
        )
    op.drop_table("job_status_counts_watermark")
    op.drop_table("job_status_totals")
    op.drop_table("job_status_counts")
