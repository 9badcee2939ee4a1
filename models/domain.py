"""The domain tables the typed tasks read and write (not the ledger).

- ``datasets`` / ``dataset_rows``: what ``import`` loads and ``export`` writes out. A row
  is a JSON object; ``row_key`` is set when the import names a key column, so
  re-importing the same keys updates rows instead of adding them.
- ``transactions``: a budget's transactions pulled by ``sync`` (upserted on
  ``(tenant, budget_id, external_id)``).
- ``sync_cursors``: where the last complete ``sync`` of a budget from a source stopped.
- ``suggestions``: categories proposed by ``suggest``; ``pending`` ones are replaced on
  every run, ``applied``/``rejected`` ones are history and never touched.

Every table carries ``tenant``, and every key and index starts with it: a budget or a
dataset is named within its tenant, so two tenants may both have a budget
``household`` and never see each other's rows. The tenant a job writes is the one of its
ledger row (:attr:`app.ledger.runtime.context.JobContext.tenant`), never a value from the payload.

The reads and writes live in :mod:`tasks._store`; the schema in migrations ``0002`` and
``0005`` (which added ``tenant`` to the tables that lacked it).
``job_id`` columns name the ledger job that last wrote a row. They carry no foreign key on
purpose: the retention purge deletes old jobs, never the data they produced.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId

Timestamp = DateTime(timezone=True)
SUGGESTION_STATUSES = ("pending", "applied", "rejected")


class Dataset(Base):
    """A named table-like set of rows of one tenant."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    #: Column names in first-seen order (the header of an export).
    columns: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    #: The key column of the last keyed import, if any.
    key_column: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (UniqueConstraint("tenant", "name"),)


class DatasetRow(Base):
    """One row of a dataset; read back in ``id`` (import) order."""

    __tablename__ = "dataset_rows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: The dataset's tenant (kept on the row so every read filters on it directly).
    tenant: Mapped[str] = mapped_column(String(128))
    dataset_id: Mapped[int] = mapped_column(BigId, ForeignKey("datasets.id", ondelete="CASCADE"))
    #: Value of the key column when the import was keyed; NULL rows never collide.
    row_key: Mapped[str | None] = mapped_column(String(512))
    data: Mapped[dict[str, Any]]
    job_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant", "dataset_id", "row_key"),
        Index("ix_dataset_rows_tenant_dataset_id_id", "tenant", "dataset_id", "id"),
        Index("ix_dataset_rows_job_id", "job_id"),
    )


class Transaction(Base):
    """A budget's transaction as pulled from its source."""

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    budget_id: Mapped[str] = mapped_column(String(128))
    external_id: Mapped[str] = mapped_column(String(256))
    booked_on: Mapped[date] = mapped_column(Date)
    payee: Mapped[str] = mapped_column(Text)
    #: :func:`tasks._store.normalize_payee` of ``payee``: what suggestions group by.
    payee_normalized: Mapped[str] = mapped_column(String(256))
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    category: Mapped[str | None] = mapped_column(String(128))
    memo: Mapped[str | None] = mapped_column(Text)
    #: The source record's cursor value (e.g. its ``updated_at``), as text.
    source_cursor: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant", "budget_id", "external_id"),
        Index(
            "ix_transactions_tenant_budget_id_payee_normalized",
            "tenant",
            "budget_id",
            "payee_normalized",
        ),
    )


class SyncCursor(Base):
    """Where the last complete sync of a budget from one source stopped."""

    __tablename__ = "sync_cursors"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    budget_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: A stable, password-free identity of the source (see ``SyncSource.identity``).
    source_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    #: ``{"field": <cursor column>, "value": <largest value seen>}``.
    cursor: Mapped[dict[str, Any]]
    job_id: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Suggestion(Base):
    """A proposed category for an uncategorized transaction."""

    __tablename__ = "suggestions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: Its transaction's tenant.
    tenant: Mapped[str] = mapped_column(String(128))
    budget_id: Mapped[str] = mapped_column(String(128))
    transaction_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("transactions.id", ondelete="CASCADE")
    )
    category: Mapped[str] = mapped_column(String(128))
    #: Share of the payee's categorized history that has ``category`` (0 to 1).
    confidence: Mapped[float] = mapped_column(Float)
    #: How many categorized transactions of the payee the suggestion rests on.
    evidence: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    job_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(repr(s) for s in SUGGESTION_STATUSES) + ")", name="status"
        ),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        Index("ix_suggestions_tenant_budget_id_status", "tenant", "budget_id", "status"),
        Index("ix_suggestions_transaction_id", "transaction_id"),
    )
