"""domain tables (datasets, transactions, suggestions) for the typed tasks

datasets and dataset_rows (import/export), transactions and sync_cursors (sync),
suggestions (suggest). They mirror models/domain.py; job_id columns have no foreign key
on purpose (the retention purge removes jobs, not the data they wrote).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JsonDoc = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("columns", JsonDoc, server_default=sa.text("'[]'"), nullable=False),
        sa.Column("key_column", sa.String(length=128), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("tenant", "name", name=op.f("uq_datasets_tenant_name")),
    )
    op.create_table(
        "dataset_rows",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("dataset_id", BigId, nullable=False),
        sa.Column("row_key", sa.String(length=512), nullable=True),
        sa.Column("data", JsonDoc, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_rows_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_rows")),
        sa.UniqueConstraint(
            "dataset_id", "row_key", name=op.f("uq_dataset_rows_dataset_id_row_key")
        ),
    )
    op.create_index("ix_dataset_rows_dataset_id_id", "dataset_rows", ["dataset_id", "id"])
    op.create_index("ix_dataset_rows_job_id", "dataset_rows", ["job_id"])
    op.create_table(
        "transactions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("budget_id", sa.String(length=128), nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=False),
        sa.Column("booked_on", sa.Date(), nullable=False),
        sa.Column("payee", sa.Text(), nullable=False),
        sa.Column("payee_normalized", sa.String(length=256), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column("category", sa.String(length=128), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("source_cursor", sa.String(length=64), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "budget_id", "external_id", name=op.f("uq_transactions_budget_id_external_id")
        ),
    )
    op.create_index(
        "ix_transactions_budget_id_payee_normalized",
        "transactions",
        ["budget_id", "payee_normalized"],
    )
    op.create_table(
        "sync_cursors",
        sa.Column("budget_id", sa.String(length=128), nullable=False),
        sa.Column("source_key", sa.String(length=512), nullable=False),
        sa.Column("cursor", JsonDoc, nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("budget_id", "source_key", name=op.f("pk_sync_cursors")),
    )
    op.create_table(
        "suggestions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("budget_id", sa.String(length=128), nullable=False),
        sa.Column("transaction_id", BigId, nullable=False),
        sa.Column("category", sa.String(length=128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("evidence", sa.Integer(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'rejected')", name=op.f("ck_suggestions_status")
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_suggestions_confidence")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_suggestions_transaction_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestions")),
    )
    op.create_index("ix_suggestions_budget_id_status", "suggestions", ["budget_id", "status"])
    op.create_index("ix_suggestions_transaction_id", "suggestions", ["transaction_id"])


def downgrade() -> None:
    op.drop_table("suggestions")
    op.drop_table("sync_cursors")
    op.drop_table("transactions")
    op.drop_table("dataset_rows")
    op.drop_table("datasets")
