"""Bulk operations (:mod:`app.ledger.operations.bulk`): one row per named cancel or retry
over a filter, who asked, what it matched and how far it got.

``(tenant, name)`` is unique: running the same operation again finds this row instead
of acting twice. Jobs and events point back with a plain ``operation_id`` column, not a
foreign key: ``job_events`` is append-only (PostgreSQL refuses its UPDATE), so an
``ON DELETE SET NULL`` could never run there, and an operation row is kept as long as
the jobs it names anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId

Timestamp = DateTime(timezone=True)
#: What a bulk operation does to each job it matches.
ACTIONS = ("cancel", "retry")
#: ``running`` while batches are being applied, ``done`` once every matched job was
#: acted on or skipped, ``failed`` when a batch stopped on an error (run it again).
STATUSES = ("running", "done", "failed")


class JobOperation(Base):
    """A bulk cancel or retry over a filter of one tenant's jobs."""

    __tablename__ = "job_operations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    #: The filter as its query names (``q``, ``status``, ``type``…), as given.
    filter: Mapped[dict[str, Any]]
    #: Jobs the filter matched (and the action could move) when the operation started.
    matched: Mapped[int] = mapped_column(server_default=text("0"))
    #: Jobs acted on so far (progress: ``done`` of ``matched``).
    done: Mapped[int] = mapped_column(server_default=text("0"))
    #: Matched jobs that had moved on (finished, canceled, retried by someone else) by
    #: the time their batch came: left alone, never forced.
    skipped: Mapped[int] = mapped_column(server_default=text("0"))
    status: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    #: Why a ``failed`` operation stopped.
    error: Mapped[str | None] = mapped_column(String(1000))
    #: The API key's name (or ``cli``) that ran it.
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        UniqueConstraint("tenant", "name"),
        CheckConstraint(f"action IN {ACTIONS!r}", name="action"),
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        Index("ix_job_operations_tenant_created_at", "tenant", "created_at"),
    )
