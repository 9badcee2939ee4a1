"""tenant on every domain table

``dataset_rows``, ``transactions``, ``sync_cursors`` and ``suggestions`` were keyed by
their dataset or budget alone, so two tenants with a budget of the same name shared (and
overwrote) one set of rows. Each gets a ``tenant`` column (NOT NULL), and every unique
key and index now starts with it (``sync_cursors``' primary key included).

Existing rows are moved, in this order:

- ``dataset_rows``: the tenant of their dataset (``datasets`` always had one);
- ``transactions`` and ``sync_cursors``: the tenant of the job that last wrote them
  (``job_id``), or ``default`` when that job is gone (purged) or unknown;
- ``suggestions``: the tenant of their transaction, so a suggestion stays with the
  transaction it is about (before this revision another tenant's ``suggest`` could have
  written it).

Each table is rewritten once (one UPDATE per table, then the constraint changes); on
SQLite the constraint changes copy the table (Alembic's batch mode). The tables are
locked meanwhile (its duration at 700,000 rows: benchmarks/RESULTS.md), so run it with
the workers stopped.

Downgrade drops the columns and restores the old keys. It refuses, changing nothing, when
two tenants hold rows the old keys cannot tell apart (the same budget and external id,
dataset row key, or cursor): which tenant's row to drop is not the migration's choice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Tenant = sa.String(length=128)

#: ``table -> SQL expression of each existing row's tenant``, in the order they are moved
#: (suggestions after transactions: they take their transaction's tenant).
MOVES = (
    (
        "dataset_rows",
        "(SELECT d.tenant FROM datasets d WHERE d.id = dataset_rows.dataset_id)",
    ),
    (
        "transactions",
        "COALESCE((SELECT j.tenant FROM jobs j WHERE j.id = transactions.job_id), 'default')",
    ),
    (
        "sync_cursors",
        "COALESCE((SELECT j.tenant FROM jobs j WHERE j.id = sync_cursors.job_id), 'default')",
    ),
    (
        "suggestions",
        "COALESCE((SELECT t.tenant FROM transactions t "
        "WHERE t.id = suggestions.transaction_id), 'default')",
    ),
)

#: The keys the old schema had, each with the columns of its key: checked before a
#: downgrade, since rows of two tenants may collide in them.
OLD_KEYS = (
    ("dataset_rows", ("dataset_id", "row_key")),
    ("transactions", ("budget_id", "external_id")),
    ("sync_cursors", ("budget_id", "source_key")),
)


def upgrade() -> None:
    for table, tenant_of_row in MOVES:
        op.add_column(table, sa.Column("tenant", Tenant, nullable=True))
        op.execute(f"UPDATE {table} SET tenant = {tenant_of_row}")
    with op.batch_alter_table("dataset_rows") as batch:
        batch.alter_column("tenant", existing_type=Tenant, nullable=False)
        batch.drop_constraint("uq_dataset_rows_dataset_id_row_key", type_="unique")
        batch.create_unique_constraint(
            "uq_dataset_rows_tenant_dataset_id_row_key", ["tenant", "dataset_id", "row_key"]
        )
        batch.drop_index("ix_dataset_rows_dataset_id_id")
        batch.create_index("ix_dataset_rows_tenant_dataset_id_id", ["tenant", "dataset_id", "id"])
    with op.batch_alter_table("transactions") as batch:
        batch.alter_column("tenant", existing_type=Tenant, nullable=False)
        batch.drop_constraint("uq_transactions_budget_id_external_id", type_="unique")
        batch.create_unique_constraint(
            "uq_transactions_tenant_budget_id_external_id", ["tenant", "budget_id", "external_id"]
        )
        batch.drop_index("ix_transactions_budget_id_payee_normalized")
        batch.create_index(
            "ix_transactions_tenant_budget_id_payee_normalized",
            ["tenant", "budget_id", "payee_normalized"],
        )
    with op.batch_alter_table("sync_cursors") as batch:
        batch.alter_column("tenant", existing_type=Tenant, nullable=False)
        batch.drop_constraint("pk_sync_cursors", type_="primary")
        batch.create_primary_key("pk_sync_cursors", ["tenant", "budget_id", "source_key"])
    with op.batch_alter_table("suggestions") as batch:
        batch.alter_column("tenant", existing_type=Tenant, nullable=False)
        batch.drop_index("ix_suggestions_budget_id_status")
        batch.create_index(
            "ix_suggestions_tenant_budget_id_status", ["tenant", "budget_id", "status"]
        )


def downgrade() -> None:
    _refuse_colliding_rows()
    with op.batch_alter_table("suggestions") as batch:
        batch.drop_index("ix_suggestions_tenant_budget_id_status")
        batch.create_index("ix_suggestions_budget_id_status", ["budget_id", "status"])
        batch.drop_column("tenant")
    with op.batch_alter_table("sync_cursors") as batch:
        batch.drop_constraint("pk_sync_cursors", type_="primary")
        batch.create_primary_key("pk_sync_cursors", ["budget_id", "source_key"])
        batch.drop_column("tenant")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_tenant_budget_id_payee_normalized")
        batch.create_index(
            "ix_transactions_budget_id_payee_normalized", ["budget_id", "payee_normalized"]
        )
        batch.drop_constraint("uq_transactions_tenant_budget_id_external_id", type_="unique")
        batch.create_unique_constraint(
            "uq_transactions_budget_id_external_id", ["budget_id", "external_id"]
        )
        batch.drop_column("tenant")
    with op.batch_alter_table("dataset_rows") as batch:
        batch.drop_index("ix_dataset_rows_tenant_dataset_id_id")
        batch.create_index("ix_dataset_rows_dataset_id_id", ["dataset_id", "id"])
        batch.drop_constraint("uq_dataset_rows_tenant_dataset_id_row_key", type_="unique")
        batch.create_unique_constraint(
            "uq_dataset_rows_dataset_id_row_key", ["dataset_id", "row_key"]
        )
        batch.drop_column("tenant")


def _refuse_colliding_rows() -> None:
    connection = op.get_bind()
    for table, key in OLD_KEYS:
        columns = ", ".join(key)
        colliding = connection.execute(
            sa.text(
                f"SELECT {columns} FROM {table} WHERE {key[-1]} IS NOT NULL "
                f"GROUP BY {columns} HAVING COUNT(DISTINCT tenant) > 1"
            )
        ).first()
        if colliding is not None:
            raise RuntimeError(
                f"cannot downgrade below 0005: {table} has rows of several tenants with the "
                f"same {columns} {tuple(colliding)}, which the old key cannot hold; delete "
                "the rows of all but one tenant first"
            )
