"""Every statement the ledger runs, named, each with a one-line comment.

Statements are SQLAlchemy Core so they run on PostgreSQL and SQLite alike; the few
dialect differences (upsert, the UTC second stamp) are resolved here and nowhere else.
:mod:`app.ledger.transitions` is the only caller of the writes.

Every write sanitises what it stores here, through :mod:`app.ledger.rules.sanitise`: the rows
and SET clauses of the Core statements pass through ``clean_row``, and each prepared
statement names the column of each parameter it stores (``columns``), so callers hand
over raw texts and documents and never redact or truncate themselves.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    Delete,
    Insert,
    Select,
    Update,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB

from app.ledger.engines.prepared import Prepared
from app.ledger.rules.sanitise import clean, clean_row
from app.ledger.rules.states import JobStatus
from models.tables import counters, events, files, jobs, logs, steps

# transitions and steps name the tables as q.jobs, q.steps…
__all__ = ["counters", "events", "files", "jobs", "logs", "steps"]


def utc_second_stamp(connection: Connection) -> ColumnElement[str]:
    """``YYYYMMDDhhmmss`` of the database's clock in UTC."""
    if connection.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", func.now()), "YYYYMMDDHH24MISS")
    return func.strftime("%Y%m%d%H%M%S", "now")


def _dialect_insert(connection: Connection, table: Any) -> Any:
    module = postgresql if connection.dialect.name == "postgresql" else sqlite
    return module.insert(table)


def bump_run_name_counter(connection: Connection, count: int = 1) -> Insert:
    # Take the next `count` sequence numbers of the current second (the first job in it
    # gets 0); returns the last one taken.
    stmt = _dialect_insert(connection, counters).values(
        stamp=utc_second_stamp(connection), last=count - 1
    )
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[counters.c.stamp], set_={"last": counters.c.last + count}
    ).returning(counters.c.stamp, counters.c.last)


def insert_job(connection: Connection, values: dict[str, Any]) -> Insert:
    # Create a job unless one with this id exists (publishing the same id twice is a no-op).
    return insert_jobs(connection, [values])


def insert_jobs(connection: Connection, rows: list[dict[str, Any]]) -> Insert:
    # Create many jobs in one statement, skipping ids that exist and idempotency keys
    # their tenant used already (no conflict target: either unique index); returns those
    # created.
    stmt = _dialect_insert(connection, jobs).values([clean_row(row) for row in rows])
    return stmt.on_conflict_do_nothing().returning(  # type: ignore[no-any-return]
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


def move(
    table: Any,
    row_id: uuid.UUID,
    target: JobStatus,
    allowed: Iterable[JobStatus],
    values: dict[str, Any],
    *conditions: ColumnElement[bool],
) -> Update:
    # The guarded transition: move a job or step to `target` only from an allowed status.
    return (
        update(table)
        .where(table.c.id == row_id, table.c.status.in_([s.value for s in allowed]), *conditions)
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


def seconds_ago(connection: Connection, seconds: float) -> ColumnElement[Any]:
    # The database clock `seconds` ago, comparable with the timestamp columns.
    if connection.dialect.name == "postgresql":
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)
    return func.datetime("now", f"-{float(seconds)} seconds")


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


def merge_metadata(
    connection: Connection, job_id: uuid.UUID, execution_id: str | None, values: dict[str, Any]
) -> Update:
    # Merge `values` into the metadata of a running job (of its current execution when
    # `execution_id` is given): top-level keys are replaced, the others kept.
    column, document = jobs.c["metadata"], json.dumps(clean("metadata", values))
    if connection.dialect.name == "postgresql":
        merged: Any = column.op("||")(cast(literal(document), JSONB()))
    else:
        merged = func.json_patch(column, document)
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
        select(jobs.c.id, literal(None).label("step_id"))
        .where(jobs.c.celery_task_id == task_id)
        .union_all(select(steps.c.job_id, steps.c.id).where(steps.c.celery_task_id == task_id))
        .limit(1)
    )


def steps_after(job_id: uuid.UUID, position: int) -> Select[Any]:
    # The steps of a chain that come after `position`.
    return select(steps.c.id).where(steps.c.job_id == job_id, steps.c.position > position)


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
    job_id: uuid.UUID,
    target: JobStatus,
    allowed: Iterable[JobStatus],
    values: dict[str, Any],
    after_position: int = 0,
) -> Update:
    # Guarded transition of every step of a job after `after_position` (cancel the rest).
    return (
        update(steps)
        .where(
            steps.c.job_id == job_id,
            steps.c.position > after_position,
            steps.c.status.in_([s.value for s in allowed]),
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


# -- PostgreSQL fast path ------------------------------------------------------------------
# The three transitions every job takes (queued, running, finished) as one statement each:
# a data-modifying CTE does the guarded move and writes its event row, and runs in
# autocommit, so each costs one round trip (a transaction of separate statements costs
# BEGIN + n + COMMIT). Each is prepared once per connection (app.ledger.engines.prepared); the
# generic statements above stay for SQLite and for the rarer transitions. Their guards
# and event rows are the same as those of `move`. Parameters are Python values: each
# stored one is sanitised for the column `columns` names, `jsonb` ones are encoded.

#: Publish: bump the second's name counter, insert the job, write its creation event.
#: $1 id, $2 type, $3 tenant, $4 subject, $5 payload, $6 trigger, $7 created_by,
#: $8 celery_task_id, $9 queue, $10 parent_job_id, $11 metadata, $12 message, $13 actor.
PG_RECORD_QUEUED = Prepared(
    "jobledger_record_queued",
    (
        *("uuid", "text", "text", "text", "jsonb", "text", "text", "text", "text", "uuid"),
        *("jsonb", "text", "text"),
    ),
    """
WITH seq AS (
    INSERT INTO run_name_counters (stamp, last)
    VALUES (to_char(timezone('UTC', now()), 'YYYYMMDDHH24MISS'), 0)
    ON CONFLICT (stamp) DO UPDATE SET last = run_name_counters.last + 1
    RETURNING stamp, last
), job AS (
    INSERT INTO jobs (id, name, type, status, tenant, subject, payload, trigger, created_by,
                      celery_task_id, queue, parent_job_id, metadata)
    SELECT $1, CASE WHEN seq.last = 0 THEN seq.stamp ELSE seq.stamp || '_' || seq.last END,
           $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11
    FROM seq
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, actor)
SELECT id, NULL, 'queued', $12, 0, $13 FROM job
RETURNING job_id
""",
    columns={4: "subject", 5: "payload", 11: "metadata", 12: "message"},
)

#: Start: queued|retrying -> running (attempts + 1), or a redelivery of a running job
#: whose execution was lost: running -> retrying -> running (two events, in that order;
#: lost_executions + 1). A running job is taken over only when its execution is lost:
#: its heartbeat is older than $8 seconds, or the caller found its worker gone and names
#: it ($9). No start once the lost executions would reach $10 (the caller fails the job).
#: Committed without waiting for the WAL flush: a `running` lost in a server crash is
#: harmless (the message is not acknowledged, its redelivery starts the job again), and
#: the job's durable outcome flushes it anyway. The SET LOCAL travels in the same round
#: trip and runs in the same implicit transaction, so it applies to this start only.
#: $1 id, $2 execution_id, $3 celery_task_id, $4 worker, $5 redelivered message,
#: $6 started message, $7 worker_pid, $8 heartbeat timeout, $9 lost execution taken
#: over, $10 max lost executions.
PG_RECORD_STARTED = Prepared(
    "jobledger_record_started",
    ("uuid", "text", "text", "text", "text", "text", "int4", "float8", "text", "int4"),
    """
WITH moved AS (
    UPDATE jobs
    SET previous_status = status, status = 'running', updated_at = now(),
        attempts = attempts + 1, execution_id = $2, celery_task_id = $3, worker = $4,
        worker_pid = $7, lost_executions = lost_executions + (status = 'running')::int,
        started_at = coalesce(started_at, now()), heartbeat_at = now()
    WHERE id = $1
      AND status IN ('queued', 'retrying', 'running')
      AND cancel_requested_at IS NULL
      AND (celery_task_id IS NULL OR celery_task_id = $3)
      AND (execution_id IS NULL OR execution_id <> $2)
      AND (status <> 'running' OR execution_id = $9
           OR coalesce(heartbeat_at, updated_at) < now() - make_interval(secs => $8))
      AND lost_executions + (status = 'running')::int < $10
    RETURNING id, previous_status, attempts
), history AS (
    INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor)
    SELECT id, 'running', 'retrying', $5, attempts - 1, $4, 'worker'
    FROM moved WHERE previous_status = 'running'
    UNION ALL
    SELECT id, CASE previous_status WHEN 'running' THEN 'retrying' ELSE previous_status END,
           'running', $6, attempts, $4, 'worker'
    FROM moved
)
SELECT previous_status, attempts FROM moved
""",
    prefix="SET LOCAL synchronous_commit = off; ",
    columns={5: "message", 6: "message"},
)

#: Finish: running -> succeeded|partial for the current execution only.
#: $1 id, $2 execution_id, $3 target status, $4 result, $5 errors, $6 result_url,
#: $7 message.
PG_RECORD_FINISHED = Prepared(
    "jobledger_record_finished",
    ("uuid", "text", "text", "jsonb", "jsonb", "text", "text"),
    """
WITH moved AS (
    UPDATE jobs
    SET previous_status = status, status = $3, updated_at = now(), result = $4,
        errors = $5, result_url = $6, completed_at = now(), progress = 100,
        failure_reason = NULL
    WHERE id = $1 AND status = 'running' AND execution_id = $2
    RETURNING id, previous_status, attempts, worker
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor)
SELECT id, previous_status, $3, $7, attempts, worker, 'worker' FROM moved
RETURNING job_id
""",
    columns={4: "result", 5: "errors", 6: "result_url", 7: "message"},
)
