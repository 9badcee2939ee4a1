"""The statements both engines share, named, each with a one-line comment.

SQLAlchemy Core, so they run on PostgreSQL and SQLite alike. What differs by database
(the upsert, the UTC second stamp, "seconds ago", the JSON merge) is not decided here:
each engine passes its own piece in (:mod:`app.ledger.engines.base`). Every guard on a
status comes from :data:`~app.ledger.rules.states.PREDECESSORS`. The engines are the
only callers.

Every write sanitises what it stores here, through :mod:`app.ledger.rules.sanitise`: the rows
and SET clauses of the Core statements pass through ``clean_row``, and each prepared
statement names the column of each parameter it stores (``columns``), so callers hand
over raw texts and documents and never redact or truncate themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Delete,
    Insert,
    Select,
    Update,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)

from app.ledger.rules.sanitise import clean_row
from app.ledger.rules.states import PREDECESSORS, JobStatus
from models.tables import counters, events, files, jobs, logs, steps


def bump_run_name_counter(upsert: Any, stamp: ColumnElement[str], count: int = 1) -> Insert:
    # Take the next `count` sequence numbers of the current second `stamp` (the first job
    # in it gets 0); returns the last one taken. `upsert`: the engine's INSERT of counters.
    stmt = upsert.values(stamp=stamp, last=count - 1)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[counters.c.stamp], set_={"last": counters.c.last + count}
    ).returning(counters.c.stamp, counters.c.last)


def insert_jobs(upsert: Any, rows: list[dict[str, Any]]) -> Insert:
    # Create many jobs in one statement, skipping ids that exist and idempotency keys
    # their tenant used already (no conflict target: either unique index); returns those
    # created. `upsert`: the engine's INSERT of jobs.
    stmt = upsert.values([clean_row(row) for row in rows])
    return stmt.on_conflict_do_nothing().returning(  # type: ignore[no-any-return]
        jobs.c.id, jobs.c.attempts
    )


def insert_many_jobs(upsert: Any) -> Insert:
    # insert_jobs for many rows, executed with them as parameters (SQLAlchemy's
    # "insertmanyvalues": multi-row INSERTs of up to 1,000 rows each, compiled once and
    # cached; rows given in .values() were compiled anew each call, 2/3 of a batch's time).
    return upsert.on_conflict_do_nothing().returning(  # type: ignore[no-any-return]
        jobs.c.id, jobs.c.attempts
    )


def jobs_by_idempotency_key(tenant: str, keys: list[str]) -> Select[Any]:
    # The jobs a tenant created with these idempotency keys, and the digest of each request.
    return select(jobs.c.id, jobs.c.idempotency_key, jobs.c.request_digest).where(
        jobs.c.tenant == tenant, jobs.c.idempotency_key.in_(keys)
    )


def release_idempotency_keys(job_ids: list[uuid.UUID]) -> Update:
    # Free the keys of jobs that were never published: the client's retry creates anew.
    return update(jobs).where(jobs.c.id.in_(job_ids)).values(idempotency_key=None)


def insert_steps(rows: list[dict[str, Any]]) -> Insert:
    # Create the ordered steps of a chained job.
    return insert(steps).values([clean_row(row) for row in rows])


def insert_events(rows: list[dict[str, Any]]) -> Insert:
    # Append history rows (never updated afterwards).
    return insert(events).values([clean_row(row) for row in rows])


def insert_many_events() -> Insert:
    # insert_events for many rows, executed with them as parameters (as insert_many_jobs).
    return insert(events)


def allowed_from(target: JobStatus, only: Iterable[JobStatus] | None = None) -> list[str]:
    """The statuses a move to ``target`` may start from: its ``PREDECESSORS``, narrowed to
    ``only`` by a caller that wants fewer (never widened: a status outside them is an
    error, not a guard)."""
    allowed = PREDECESSORS[target]
    if only is not None:
        wider = set(only) - allowed
        if wider:
            raise ValueError(f"{sorted(wider)} -> {target} is not an edge of PREDECESSORS")
        allowed = frozenset(only)
    return sorted(s.value for s in allowed)


def move(
    table: Any,
    row_id: uuid.UUID,
    target: JobStatus,
    values: dict[str, Any],
    *conditions: ColumnElement[bool],
    sources: list[str] | None = None,
) -> Update:
    # The guarded transition: move a job or step to `target` only from an allowed status
    # (`sources`, by default PREDECESSORS[target]).
    allowed = allowed_from(target) if sources is None else sources
    return (
        update(table)
        .where(table.c.id == row_id, table.c.status.in_(allowed), *conditions)
        .values(
            previous_status=table.c.status,
            status=target.value,
            updated_at=func.now(),
            **clean_row(values),
        )
        .returning(table.c.previous_status, table.c.attempts)
    )


def job_state(job_id: uuid.UUID) -> Select[Any]:
    # What a start or an operator needs to decide: status, cancel intent, current message,
    # the execution now running (where, and its last sign of life), its lost executions.
    return select(
        jobs.c.status,
        jobs.c.cancel_requested_at,
        jobs.c.celery_task_id,
        jobs.c.execution_id,
        jobs.c.attempts,
        jobs.c.type,
        jobs.c.payload,
        jobs.c.worker,
        jobs.c.lost_executions,
        func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at).label("heartbeat"),
    ).where(jobs.c.id == job_id)


def job_tenant(job_id: uuid.UUID) -> Select[Any]:
    # The tenant a job acts for (never changes after the job is recorded).
    return select(jobs.c.tenant).where(jobs.c.id == job_id)


def step_state(step_id: uuid.UUID) -> Select[Any]:
    # Status and parent of one step; its current execution (where) and lost executions.
    return select(
        steps.c.status,
        steps.c.job_id,
        steps.c.position,
        steps.c.execution_id,
        steps.c.celery_task_id,
        steps.c.attempts,
        steps.c.worker,
        steps.c.lost_executions,
    ).where(steps.c.id == step_id)


def checkpoint(
    job_id: uuid.UUID,
    execution_id: str | None,
    progress: int | None,
    message: str | None,
) -> Update:
    # Heartbeat (and raise progress, never lower it) of a running job — of its current
    # execution when `execution_id` is given (a chained job's parent has none); tells
    # whether a cancel was requested, and its reason.
    values: dict[str, Any] = {"heartbeat_at": func.now(), "updated_at": func.now()}
    if progress is not None:
        values["progress"] = case((jobs.c.progress < progress, progress), else_=jobs.c.progress)
    if message is not None:
        values["progress_message"] = message
    values = clean_row(values)
    guards = [jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value]
    if execution_id is not None:
        guards.append(jobs.c.execution_id == execution_id)
    return (
        update(jobs)
        .where(*guards)
        .values(**values)
        .returning(jobs.c.cancel_requested_at, jobs.c.failure_reason)
    )


def merge_metadata(job_id: uuid.UUID, execution_id: str | None, merged: Any) -> Update:
    # Set the metadata of a running job (of its current execution when `execution_id` is
    # given) to `merged`: the engine's merge of the stored document with the new keys.
    guards = [jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value]
    if execution_id is not None:
        guards.append(jobs.c.execution_id == execution_id)
    return update(jobs).where(*guards).values({"metadata": merged, "updated_at": func.now()})


def request_cancel(job_id: uuid.UUID, reason: str) -> Update:
    # Leave a durable cancel intent on a running job (its next checkpoint acts on it); the
    # reason waits in failure_reason until the job is canceled with it.
    return (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.status == JobStatus.RUNNING.value,
            jobs.c.cancel_requested_at.is_(None),
        )
        .values(
            cancel_requested_at=func.now(),
            updated_at=func.now(),
            **clean_row({"failure_reason": reason}),
        )
        .returning(jobs.c.id)
    )


def insert_log(values: dict[str, Any]) -> Insert:
    # Append one log line of a job.
    return insert(logs).values(**clean_row(values))


def insert_file(values: dict[str, Any]) -> Insert:
    # Record a file a job read or wrote.
    return insert(files).values(**clean_row(values))


def job_id_for_task(task_id: str) -> CompoundSelect[Any]:
    # Which job a Celery message belongs to (the job row, or the parent of a step).
    return (
        # typed NULL: the union's step_id reads back as a UUID on every engine
        select(jobs.c.id, literal(None, steps.c.id.type).label("step_id"))
        .where(jobs.c.celery_task_id == task_id)
        .union_all(select(steps.c.job_id, steps.c.id).where(steps.c.celery_task_id == task_id))
        .limit(1)
    )


def delete_counters_before(stamp: str) -> Delete:
    # Run-name counters of seconds that can no longer collide.
    return delete(counters).where(counters.c.stamp < stamp)


def lock_job(job_id: uuid.UUID) -> Select[Any]:
    # Lock a chained job's row so its steps' transitions are applied one at a time.
    return (
        select(
            jobs.c.status,
            jobs.c.cancel_requested_at,
            jobs.c.failure_reason,
            # a chained job heartbeats through its running step
            func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at).label("heartbeat"),
        )
        .where(jobs.c.id == job_id)
        .with_for_update()
    )


def move_steps(
    job_id: uuid.UUID, target: JobStatus, values: dict[str, Any], after_position: int = 0
) -> Update:
    # Guarded transition of every step of a job after `after_position` (cancel the rest).
    return (
        update(steps)
        .where(
            steps.c.job_id == job_id,
            steps.c.position > after_position,
            steps.c.status.in_(allowed_from(target)),
        )
        .values(
            previous_status=steps.c.status,
            status=target.value,
            updated_at=func.now(),
            **clean_row(values),
        )
        .returning(steps.c.id, steps.c.previous_status, steps.c.attempts)
    )


def step_checkpoint(step_id: uuid.UUID, execution_id: str, progress: int | None) -> Update:
    # Heartbeat (and raise progress) of the step execution now running.
    values: dict[str, Any] = {"updated_at": func.now()}
    if progress is not None:
        values["progress"] = case((steps.c.progress < progress, progress), else_=steps.c.progress)
    return (
        update(steps)
        .where(
            steps.c.id == step_id,
            steps.c.status == JobStatus.RUNNING.value,
            steps.c.execution_id == execution_id,
        )
        .values(**values)
        .returning(steps.c.position)
    )


def step_summary(job_id: uuid.UUID) -> Select[Any]:
    # Every step of a job in order, with what the parent's result and status need.
    return (
        select(steps.c.position, steps.c.step_type, steps.c.status, steps.c.result)
        .where(steps.c.job_id == job_id)
        .order_by(steps.c.position)
    )
