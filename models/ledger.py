"""The ledger tables: jobs, job_steps, job_events, job_logs, job_files.

Timestamps come from the database clock (``now()``) so that ``started_at >= created_at``
holds whichever machine wrote each one.
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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.ledger.rules.actors import ACTORS, TRIGGERS
from app.ledger.rules.states import LIVE, JobStatus
from models.base import Base, BigId


def _in(column: str, values: tuple[str, ...] | list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


STATUS_VALUES = [s.value for s in JobStatus]
LIVE_VALUES = sorted(s.value for s in LIVE)
Timestamp = DateTime(timezone=True)


class Job(Base):
    """One row per job, for the life of the job (its id survives retries)."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    #: The status before the last transition (set by the same UPDATE, so the event row
    #: can name where the job came from without a second read).
    previous_status: Mapped[str | None] = mapped_column(String(16))
    progress: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    progress_message: Mapped[str | None] = mapped_column(Text)
    tenant: Mapped[str] = mapped_column(String(128), server_default=text("'default'"))
    subject: Mapped[str | None] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any] | None]
    result_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[list[Any]] = mapped_column(server_default=text("'[]'"))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=text("'{}'"))
    parent_job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE")
    )
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    #: Identifies the execution now running (one per start); guards its own transitions
    #: so a late signal of an earlier execution cannot finish a newer one.
    execution_id: Mapped[str | None] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    #: Executions that ended without an outcome (their process or worker died); at
    #: ``JOBLEDGER_MAX_LOST_EXECUTIONS`` the next delivery fails the job instead.
    lost_executions: Mapped[int] = mapped_column(server_default=text("0"))
    queue: Mapped[str | None] = mapped_column(String(128))
    #: The job's priority, 0 (least urgent) to 9 (most urgent): the job's own, else its
    #: type's (``JOBLEDGER_PRIORITIES``), else 5 (:mod:`app.queues`).
    priority: Mapped[int | None] = mapped_column(SmallInteger)
    #: Failed after its retry policy's last attempt: the job is dead (view ``dead_jobs``).
    #: A manual retry clears it.
    retries_exhausted: Mapped[bool] = mapped_column(server_default=text("false"))
    worker: Mapped[str | None] = mapped_column(String(256))
    #: Pool process of the current execution on ``worker`` (names the one a loss is about).
    worker_pid: Mapped[int | None]
    created_by: Mapped[str | None] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(16), server_default=text("'producer'"))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: A client's key for "this request, once" (``Idempotency-Key``, ``apply_async(
    #: idempotency_key=…)``): unique per tenant, so a retried request finds its job.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    #: SHA-256 of the request that created the job with that key (type, redacted
    #: payload, subject): the same key with another request is refused.
    request_digest: Mapped[str | None] = mapped_column(String(64))
    #: The definition this job was made from, its version then, and for a scheduled run
    #: the firing it is (``(definition_id, scheduled_for)`` is unique: one job per firing).
    definition_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_definitions.id", ondelete="RESTRICT")
    )
    definition_version: Mapped[int | None]
    scheduled_for: Mapped[datetime | None] = mapped_column(Timestamp)
    #: The last bulk operation (``job_operations.id``) that canceled or retried this job:
    #: a retried job keeps its link to the operation that queued it again.
    operation_id: Mapped[int | None] = mapped_column(BigId)

    __table_args__ = (
        CheckConstraint(_in("status", STATUS_VALUES), name="status"),
        CheckConstraint(_in("trigger", TRIGGERS), name="trigger"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress"),
        CheckConstraint("status <> 'failed' OR failure_reason IS NOT NULL", name="failed_reason"),
        CheckConstraint("started_at IS NULL OR started_at >= created_at", name="started_order"),
        CheckConstraint(
            "completed_at IS NULL OR started_at IS NULL OR completed_at >= started_at",
            name="completed_order",
        ),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_type_created_at", "type", "created_at"),
        Index("ix_jobs_tenant_created_at", "tenant", "created_at"),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_completed_at", "completed_at"),
        Index("ix_jobs_subject", "subject"),
        Index("ix_jobs_celery_task_id", "celery_task_id"),
        Index("ix_jobs_parent_job_id", "parent_job_id"),
        Index("ix_jobs_tenant_idempotency_key", "tenant", "idempotency_key", unique=True),
        # each firing of a definition creates at most one job, whichever beat fires it
        Index(
            "ix_jobs_definition_id_scheduled_for",
            "definition_id",
            "scheduled_for",
            unique=True,
            postgresql_where=text("scheduled_for IS NOT NULL"),
            sqlite_where=text("scheduled_for IS NOT NULL"),
        ),
        Index("ix_jobs_definition_id_created_at", "definition_id", "created_at"),
        # a tenant's jobs in some statuses, newest first: the console's lists, its
        # counts and the jobs a bulk operation selects
        Index("ix_jobs_tenant_status_created_at", "tenant", "status", "created_at"),
        Index("ix_jobs_operation_id", "operation_id"),
        # Dashboards and the lifeline only look at live jobs: a small partial index keeps
        # them fast however many finished jobs the table holds.
        Index(
            "ix_jobs_live",
            "status",
            "updated_at",
            postgresql_where=text(_in("status", LIVE_VALUES)),
            sqlite_where=text(_in("status", LIVE_VALUES)),
        ),
    )


class JobStep(Base):
    """An ordered step of a chained job (``sync_and_suggest``: 1 sync, 2 suggest)."""

    __tablename__ = "job_steps"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int]
    step_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    previous_status: Mapped[str | None] = mapped_column(String(16))
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    execution_id: Mapped[str | None] = mapped_column(String(36))
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    #: Executions of the step that ended without an outcome (see ``jobs.lost_executions``).
    lost_executions: Mapped[int] = mapped_column(server_default=text("0"))
    #: Worker node and pool process of the step's current execution.
    worker: Mapped[str | None] = mapped_column(String(256))
    worker_pid: Mapped[int | None]
    progress: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        UniqueConstraint("job_id", "position"),
        CheckConstraint(_in("status", STATUS_VALUES), name="status"),
        CheckConstraint("position >= 1", name="position"),
        Index("ix_job_steps_celery_task_id", "celery_task_id"),
    )


class JobEvent(Base):
    """Immutable history: one row per status change of a job or a step.

    On PostgreSQL a trigger (see the first migration) refuses UPDATE of this table.
    """

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_steps.id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(16))
    #: Who exactly, when ``actor`` is a person's tool: the API key's name (``api``) or
    #: the operator's login (``cli``).
    actor_name: Mapped[str | None] = mapped_column(String(128))
    #: The bulk operation (``job_operations.id``) this event is part of.
    operation_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("actor", ACTORS), name="actor"),
        CheckConstraint(_in("to_status", STATUS_VALUES), name="to_status"),
        Index("ix_job_events_job_id_id", "job_id", "id"),
    )


class JobLog(Base):
    """A log line of a job, read in ``id`` order; messages are at most 5000 characters."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_steps.id", ondelete="CASCADE")
    )
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (Index("ix_job_logs_job_id_id", "job_id", "id"),)


class JobFile(Base):
    """A file a job read (``in``) or wrote (``out``)."""

    __tablename__ = "job_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_steps.id", ondelete="CASCADE")
    )
    direction: Mapped[str] = mapped_column(String(3))
    uri: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigId)
    sha256: Mapped[str | None] = mapped_column(String(64))
    records: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())

    __table_args__ = (
        CheckConstraint("direction IN ('in', 'out')", name="direction"),
        Index("ix_job_files_job_id", "job_id"),
    )


class RunNameCounter(Base):
    """How many jobs were named in one UTC second: makes ``YYYYMMDDhhmmss_n`` unique under
    concurrent producers (the upsert on this row serialises them, per second only)."""

    __tablename__ = "run_name_counters"

    stamp: Mapped[str] = mapped_column(String(14), primary_key=True)
    last: Mapped[int] = mapped_column(server_default=text("0"))
