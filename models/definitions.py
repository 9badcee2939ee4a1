"""Job definitions (what a job *is*: type, payload, schedule), their append-only change
log, and the beat lease (one active beat at a time).

Written only through :mod:`app.ledger.definitions` (the lease by the beat scheduler).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.ledger.rules.actors import ACTORS
from models.base import Base, BigId, JsonDoc

Timestamp = DateTime(timezone=True)
CATCH_UP = ("skip", "once")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class JobDefinition(Base):
    """A named, tenant-scoped definition of a job, optionally on a schedule."""

    __tablename__ = "job_definitions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    #: ``{"cron": "*/5 * * * *", "timezone": "Europe/Paris"}`` or ``{"every": 30}``.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    catch_up: Mapped[str] = mapped_column(String(8), server_default=text("'skip'"))
    #: Run options (queue, priority, time_limit, soft_time_limit, retry_policy).
    options: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'"))
    version: Mapped[int] = mapped_column(server_default=text("1"))
    archived_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: The next firing the scheduler will make; null when unscheduled, disabled, archived.
    next_run_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: The scheduled time of the last firing made (guards :func:`advance`).
    last_fired_for: Mapped[datetime | None] = mapped_column(Timestamp)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("tenant", "name"),
        CheckConstraint(_in("catch_up", CATCH_UP), name="catch_up"),
        CheckConstraint("version >= 1", name="version"),
        # the scheduler's question: which enabled definitions are due
        Index(
            "ix_job_definitions_next_run_at",
            "next_run_at",
            postgresql_where=text("next_run_at IS NOT NULL"),
            sqlite_where=text("next_run_at IS NOT NULL"),
        ),
    )


class JobDefinitionChange(Base):
    """One row per change of a definition (the whole definition at its creation).

    On PostgreSQL a trigger (migration 0009) refuses UPDATE and DELETE of this table.
    """

    __tablename__ = "job_definition_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    definition_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("job_definitions.id", ondelete="RESTRICT")
    )
    version: Mapped[int]
    actor: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str | None] = mapped_column(String(128))
    #: ``{field: {"from": old, "to": new}}``; on creation the whole definition.
    changes: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("actor", ACTORS), name="actor"),
        Index("ix_job_definition_changes_definition_id_id", "definition_id", "id"),
    )


class BeatLease(Base):
    """Who is the active beat, until when (renewed every tick)."""

    __tablename__ = "beat_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    acquired_at: Mapped[datetime | None] = mapped_column(Timestamp)
