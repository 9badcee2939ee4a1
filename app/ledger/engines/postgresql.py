"""The PostgreSQL engine: the shared Core statements, plus one statement per hot transition.

The three transitions every job takes (queued, running, finished) are each one
data-modifying CTE that does the guarded move and writes its event row, prepared once
per connection (:mod:`app.ledger.engines.prepared`) and run in autocommit: one round trip
each. The worker's lazy start (:mod:`app.ledger.runtime.lazy_start`) adds a prepared
read (MAY_START) and the CTE writing a quick job's start and outcome together
(RECORD_STARTED_FINISHED), so such a job costs its worker one read and one write.
Their guards and event rows are those of the shared statements
(:class:`~app.ledger.engines.core.CoreEngine`), and their ``status IN (…)`` lists are
formatted from :data:`~app.ledger.rules.states.PREDECESSORS` when this module is
imported, so an edge added there reaches this SQL too. Parameters are Python values:
each stored one is sanitised for the column ``columns`` names, ``jsonb`` ones encoded.
The bulk enqueue (:meth:`~app.ledger.engines.core.CoreEngine.record_queued_many`) is one
statement too, its jobs bound as one array per column (RECORD_QUEUED_MANY). Everything
else (the rarer transitions, the steps) is the shared Core statements.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Float, Integer, case, cast, func, literal, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from app.config import settings
from app.db import autocommit_engine, engine, in_transaction
from app.ledger.engines import counts_queries as cq
from app.ledger.engines.base import REDELIVERED, Execution, MayStart, NewJob, NewStep, T
from app.ledger.engines.core import CoreEngine
from app.ledger.engines.overlapped import OVERLAPPED
from app.ledger.engines.prepared import Prepared
from app.ledger.rules import attribution
from app.ledger.rules.actors import Actor
from app.ledger.rules.durations import BUCKET_BASE
from app.ledger.rules.sanitise import clean
from app.ledger.rules.states import PREDECESSORS, START_SOURCES, JobStatus

S = JobStatus


def _in(statuses: Iterable[JobStatus]) -> str:
    """``'a', 'b'``: a status set as the inside of an SQL ``IN (…)``."""
    return ", ".join(f"'{s.value}'" for s in sorted(statuses))


def _moves_to(parameter: str, targets: Sequence[JobStatus]) -> str:
    """The guard of a statement whose target status is ``parameter`` (one of ``targets``):
    the row's status is one of that target's ``PREDECESSORS``."""
    groups: dict[frozenset[JobStatus], list[JobStatus]] = {}
    for target in targets:
        groups.setdefault(PREDECESSORS[target], []).append(target)
    if len(groups) == 1:
        return f"status IN ({_in(next(iter(groups)))})"
    return (
        "("
        + " OR ".join(
            f"({parameter} IN ({_in(group)}) AND status IN ({_in(sources)}))"
            for sources, group in groups.items()
        )
        + ")"
    )


_QUEUED, _RUNNING, _RETRYING = S.QUEUED.value, S.RUNNING.value, S.RETRYING.value

#: Publish: bump the second's name counter, insert the job, write its creation event.
#: $1 id, $2 type, $3 tenant, $4 subject, $5 payload, $6 trigger, $7 created_by,
#: $8 celery_task_id, $9 queue, $10 parent_job_id, $11 metadata, $12 message, $13 actor,
#: $14 priority, $15 actor_name and $16 operation_id (the key and bulk operation acting,
#: :mod:`app.ledger.rules.attribution`).
RECORD_QUEUED = Prepared(
    "jobledger_record_queued",
    (
        *("uuid", "text", "text", "text", "jsonb", "text", "text", "text", "text", "uuid"),
        *("jsonb", "text", "text", "int2", "text", "int8"),
    ),
    f"""
WITH seq AS (
    INSERT INTO run_name_counters (stamp, last)
    VALUES (to_char(timezone('UTC', now()), 'YYYYMMDDHH24MISS'), 0)
    ON CONFLICT (stamp) DO UPDATE SET last = run_name_counters.last + 1
    RETURNING stamp, last
), job AS (
    INSERT INTO jobs (id, name, type, status, tenant, subject, payload, trigger, created_by,
                      celery_task_id, queue, parent_job_id, metadata, priority)
    SELECT $1, CASE WHEN seq.last = 0 THEN seq.stamp ELSE seq.stamp || '_' || seq.last END,
           $2, '{_QUEUED}', $3, $4, $5, $6, $7, $8, $9, $10, $11, $14
    FROM seq
    ON CONFLICT (id) DO NOTHING
    RETURNING id
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, actor, actor_name,
                        operation_id)
SELECT id, NULL, '{_QUEUED}', $12, 0, $13, $15, $16 FROM job
RETURNING job_id
""",
    columns={4: "subject", 5: "payload", 11: "metadata", 12: "message", 15: "actor_name"},
)

#: The ``jobs`` columns RECORD_QUEUED_MANY fills from arrays, one element per job, and
#: the type of each array.
_MANY_COLUMNS = (
    *(("id", "uuid"), ("type", "text"), ("tenant", "text"), ("subject", "text")),
    *(("payload", "jsonb"), ("trigger", "text"), ("created_by", "text")),
    *(("celery_task_id", "text"), ("queue", "text"), ("priority", "int2")),
    *(("parent_job_id", "uuid"), ("metadata", "jsonb"), ("idempotency_key", "text")),
    *(("request_digest", "text"), ("definition_id", "uuid"), ("definition_version", "int4")),
    ("scheduled_for", "timestamptz"),
)

#: Publish many (the bulk enqueue): take the batch's run-name sequence numbers of this
#: second at once, insert the jobs from one array per column (job i, counted from 1,
#: named with sequence number last - count + i: the batch's names in its order), skipping
#: those that conflict, and write the creation event of each job inserted; returns their
#: ids. One statement, however many jobs (Core's insertmanyvalues sends a VALUES row per
#: job and two more statements). Parameters (psycopg2's): %(count)s, one array per
#: _MANY_COLUMNS, and the events' %(message)s, %(actor)s, %(actor_name)s, %(operation_id)s.
RECORD_QUEUED_MANY = f"""
WITH seq AS (
    INSERT INTO run_name_counters (stamp, last)
    VALUES (to_char(timezone('UTC', now()), 'YYYYMMDDHH24MISS'), %(count)s - 1)
    ON CONFLICT (stamp) DO UPDATE SET last = run_name_counters.last + %(count)s
    RETURNING stamp, last - %(count)s AS before
), job AS (
    INSERT INTO jobs (name, status, {", ".join(name for name, _ in _MANY_COLUMNS)})
    SELECT CASE WHEN seq.before + j.position = 0 THEN seq.stamp
                ELSE seq.stamp || '_' || (seq.before + j.position) END,
           '{S.QUEUED.value}', {", ".join(f"j.{name}" for name, _ in _MANY_COLUMNS)}
    FROM seq,
         unnest({", ".join(f"%({name})s::{kind}[]" for name, kind in _MANY_COLUMNS)})
         WITH ORDINALITY AS j({", ".join(name for name, _ in _MANY_COLUMNS)}, position)
    ORDER BY j.position
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, actor, actor_name,
                        operation_id)
SELECT id, NULL, '{S.QUEUED.value}', %(message)s, 0, %(actor)s, %(actor_name)s,
       %(operation_id)s
FROM job
RETURNING job_id
"""

#: Start: a status of START_SOURCES -> running (attempts + 1); from running (its execution
#: was lost) it is recorded running -> retrying -> running (two events, in that order;
#: lost_executions + 1). A running job is taken over only when its execution is lost:
#: its heartbeat is older than $8 seconds, or the caller found its worker gone and names
#: it ($9). No start once the lost executions would reach $10 (the caller fails the job).
#: Committed without waiting for the WAL flush: a `running` lost in a server crash is
#: harmless (the message is not acknowledged, its redelivery starts the job again), and
#: the job's durable outcome flushes it anyway. The SET LOCAL travels in the same round
#: trip and runs in the same implicit transaction, so it applies to this start only.
#: $1 id, $2 execution_id, $3 celery_task_id, $4 worker, $5 redelivered message,
#: $6 started message, $7 worker_pid, $8 heartbeat timeout, $9 lost execution taken
#: over, $10 max lost executions, $11 the delivery's queue (NULL keeps the recorded one),
#: $12 when the body really started (a lazy start written late; NULL: now), which dates
#: ``started_at`` and the running event (not a takeover's: that one is now).
RECORD_STARTED = Prepared(
    "jobledger_record_started",
    (
        *("uuid", "text", "text", "text", "text", "text", "int4", "float8", "text", "int4"),
        *("text", "timestamptz"),
    ),
    f"""
WITH moved AS (
    UPDATE jobs
    SET previous_status = status, status = '{_RUNNING}', updated_at = now(),
        attempts = attempts + 1, execution_id = $2, celery_task_id = $3, worker = $4,
        worker_pid = $7, lost_executions = lost_executions + (status = '{_RUNNING}')::int,
        started_at = coalesce(started_at, $12, now()), heartbeat_at = now(),
        queue = coalesce($11, queue)
    WHERE id = $1
      AND status IN ({_in(START_SOURCES)})
      AND cancel_requested_at IS NULL
      AND (celery_task_id IS NULL OR celery_task_id = $3)
      AND (execution_id IS NULL OR execution_id <> $2)
      AND (status <> '{_RUNNING}' OR execution_id = $9
           OR coalesce(heartbeat_at, updated_at) < now() - make_interval(secs => $8))
      AND lost_executions + (status = '{_RUNNING}')::int < $10
    RETURNING id, previous_status, attempts
), history AS (
    INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor,
                            created_at)
    SELECT id, '{_RUNNING}', '{_RETRYING}', $5, attempts - 1, $4, 'worker', now()
    FROM moved WHERE previous_status = '{_RUNNING}'
    UNION ALL
    SELECT id,
           CASE previous_status WHEN '{_RUNNING}' THEN '{_RETRYING}' ELSE previous_status END,
           '{_RUNNING}', $6, attempts, $4, 'worker',
           CASE previous_status WHEN '{_RUNNING}' THEN now() ELSE coalesce($12, now()) END
    FROM moved
)
SELECT previous_status, attempts FROM moved
""",
    prefix="SET LOCAL synchronous_commit = off; ",
    columns={5: "message", 6: "message"},
)

#: What a finish may move to (the statement's $3).
FINISHED = (S.SUCCEEDED, S.PARTIAL)


def _lazy_guard(
    job_id: str,
    execution_id: str,
    celery_task_id: str,
    max_lost: str,
    row: str = "",
    status: str = "",
) -> str:
    """The lazy start's guard on the ``jobs`` row (its columns prefixed ``row``) for the
    given SQL expressions.

    With ``status`` (an expression of the row being joined), the row's status must equal
    it and it must be one of running's predecessors: the same guard, with no condition
    on the row's status that an index can serve. A batch needs that, so that only the
    primary key drives the join: with ``status IN (…)`` of running's predecessors, or
    ``status = o.source``, the planner drove it by the status index (its statistics see few queued
    jobs, as most are settled) and read every queued job for each batch (measured with
    auto_explain: 1,472 rows read for a batch of 2, 4-7 ms of PostgreSQL CPU per batch
    with 800 jobs queued). ``(… = …) IS TRUE`` is the same test (neither side is NULL)
    and no index condition."""
    allowed = _in(PREDECESSORS[S.RUNNING])
    status_guard = (
        f"({row}status = {status}) IS TRUE AND {status} IN ({allowed})"
        if status
        else f"{row}status IN ({allowed})"
    )
    return f"""{row}id = {job_id}
      AND {status_guard}
      AND {row}cancel_requested_at IS NULL
      AND ({row}celery_task_id IS NULL OR {row}celery_task_id = {celery_task_id})
      AND ({row}execution_id IS NULL OR {row}execution_id <> {execution_id})
      AND {row}lost_executions < {max_lost}"""


#: The guard of a start written late (the worker's lazy start) and of the read allowing
#: it: RECORD_STARTED's for a job no execution runs (never a takeover). $1 id,
#: $2 execution_id, $3 celery_task_id, $4 the max lost executions.
_LAZY_GUARD = _lazy_guard("$1", "$2", "$3", "$4")

#: The lazy start's read (no write): may this execution start, from which status, as
#: which attempt, and the database clock now (its true start). $1 id, $2 execution_id,
#: $3 celery_task_id, $4 max lost executions.
MAY_START = Prepared(
    "jobledger_may_start",
    ("uuid", "text", "text", "int4"),
    f"""
SELECT status, attempts + 1, now() FROM jobs
WHERE {_LAZY_GUARD}
""",
)

#: A quick job's start and outcome in one statement: $15 (the status the read found, one
#: of running's PREDECESSORS) -> running at $12 (the true start) -> $5 (succeeded|partial)
#: now, both events, under the lazy start's guard and only while the job is still $15.
#: $1 id, $2 execution_id, $3 celery_task_id, $4 max lost executions, $5 target status,
#: $6 worker, $7 worker_pid, $8 the delivery's queue (NULL keeps the recorded one),
#: $9 result, $10 errors, $11 result_url, $12 started at, $13 started message,
#: $14 finished message, $15 source status. It returns a row (``true``: the caller needs
#: only whether the job moved, no id to decode) when it wrote, none when refused.
RECORD_STARTED_FINISHED = Prepared(
    "jobledger_record_started_finished",
    (
        *("uuid", "text", "text", "int4", "text", "text", "int4", "text", "jsonb", "jsonb"),
        *("text", "timestamptz", "text", "text", "text"),
    ),
    f"""
WITH moved AS (
    UPDATE jobs
    SET previous_status = '{_RUNNING}', status = $5, updated_at = now(),
        attempts = attempts + 1, execution_id = $2, celery_task_id = $3, worker = $6,
        worker_pid = $7, started_at = coalesce(started_at, $12), heartbeat_at = now(),
        queue = coalesce($8, queue), result = $9, errors = $10, result_url = $11,
        completed_at = now(), progress = 100, failure_reason = NULL
    WHERE {_LAZY_GUARD} AND status = $15 AND $5 IN ({_in(FINISHED)})
    RETURNING id, attempts
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor,
                        created_at)
SELECT id, $15, '{_RUNNING}', $13, attempts, $6, 'worker', $12 FROM moved
UNION ALL
SELECT id, '{_RUNNING}', $5, $14, attempts, $6, 'worker', now() FROM moved
RETURNING true
""",
    columns={9: "result", 10: "errors", 11: "result_url", 13: "message", 14: "message"},
)


#: RECORD_STARTED_FINISHED for many jobs in one statement (the worker's group commit,
#: :mod:`app.ledger.runtime.outcome_writer`): $1…$14 one array each of the single
#: statement's $1-$3 and $5-$15 (one element per job, as :meth:`PostgreSQLEngine.
#: outcome_row` bound them; ids and JSON documents as text, as a driver sends a list
#: of strings), $15 the max lost executions. The same guard per row; it
#: returns the id and execution of each job it moved.
RECORD_STARTED_FINISHED_MANY = Prepared(
    "jobledger_record_started_finished_many",
    (
        *("text[]", "text[]", "text[]", "text[]", "text[]", "int4[]", "text[]", "text[]"),
        *("text[]", "text[]", "timestamptz[]", "text[]", "text[]", "text[]", "int4"),
    ),
    f"""
WITH o AS (
    SELECT id::uuid, execution_id, celery_task_id, target, worker, worker_pid, queue,
           result::jsonb, errors::jsonb, result_url, started_at, started_message,
           finished_message, source
    FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        AS o(id, execution_id, celery_task_id, target, worker, worker_pid, queue, result,
             errors, result_url, started_at, started_message, finished_message, source)
), moved AS (
    UPDATE jobs
    SET previous_status = '{_RUNNING}', status = o.target, updated_at = now(),
        attempts = jobs.attempts + 1, execution_id = o.execution_id,
        celery_task_id = o.celery_task_id, worker = o.worker, worker_pid = o.worker_pid,
        started_at = coalesce(jobs.started_at, o.started_at), heartbeat_at = now(),
        queue = coalesce(o.queue, jobs.queue), result = o.result, errors = o.errors,
        result_url = o.result_url, completed_at = now(), progress = 100,
        failure_reason = NULL
    FROM o
    WHERE {_lazy_guard("o.id", "o.execution_id", "o.celery_task_id", "$15", "jobs.", "o.source")}
      AND o.target IN ({_in(FINISHED)})
    RETURNING jobs.id, jobs.attempts, o.execution_id, o.worker, o.started_at,
              o.started_message, o.finished_message, o.source, o.target
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker,
                            actor, created_at)
    SELECT id, source, '{_RUNNING}', started_message, attempts, worker, 'worker', started_at
    FROM moved
    UNION ALL
    SELECT id, '{_RUNNING}', target, finished_message, attempts, worker, 'worker', now()
    FROM moved
)
SELECT id, execution_id FROM moved
""",
)


#: Finish: the current execution -> succeeded|partial, from their PREDECESSORS.
#: $1 id, $2 execution_id, $3 target status, $4 result, $5 errors, $6 result_url,
#: $7 message. A row (``true``) when it wrote, none when stale.
RECORD_FINISHED = Prepared(
    "jobledger_record_finished",
    ("uuid", "text", "text", "jsonb", "jsonb", "text", "text"),
    f"""
WITH moved AS (
    UPDATE jobs
    SET previous_status = status, status = $3, updated_at = now(), result = $4,
        errors = $5, result_url = $6, completed_at = now(), progress = 100,
        failure_reason = NULL
    WHERE id = $1 AND {_moves_to("$3", FINISHED)} AND execution_id = $2
    RETURNING id, previous_status, attempts, worker
)
INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor)
SELECT id, previous_status, $3, $7, attempts, worker, 'worker' FROM moved
RETURNING true
""",
    columns={4: "result", 5: "errors", 6: "result_url", 7: "message"},
)


class PostgreSQLEngine(CoreEngine):
    """PostgreSQL: the shared statements, the prepared fast path, settled counts, vacuum."""

    dialect = "postgresql"
    writes_batches = True

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    def second_stamp(self) -> ColumnElement[str]:
        return func.to_char(func.timezone("UTC", func.now()), "YYYYMMDDHH24MISS")

    def seconds_ago(self, seconds: float) -> ColumnElement[Any]:
        return func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)

    def json_merge(self, column: Any, document: dict[str, Any]) -> ColumnElement[Any]:
        merged: ColumnElement[Any] = column.op("||")(cast(literal(json.dumps(document)), JSONB()))
        return merged

    def time_bucket(self, column: Any, unit: Literal["minute", "hour"]) -> ColumnElement[Any]:
        return func.date_trunc(unit, column, "UTC")

    def seconds_between(self, later: Any, earlier: Any) -> ColumnElement[float]:
        # epoch of an interval is exact (numeric, microseconds); as float8 it is the same
        # double Python's timedelta.total_seconds() gives
        return cast(func.extract("epoch", later - earlier), Float)

    def duration_bucket(self, seconds: ColumnElement[float]) -> ColumnElement[int]:
        # floor(log(ms) / log(1.1)) + 1 in float8, as math.log(ms, 1.1) computes it
        milliseconds = seconds * 1000
        return case(
            (milliseconds < 1, 0),
            else_=cast(func.floor(func.ln(milliseconds) / func.ln(BUCKET_BASE)), Integer) + 1,
        )

    def vacuum(self, tables: Sequence[str]) -> list[str]:
        # Plain VACUUM takes no lock that blocks reads or writes; it cannot run in a
        # transaction, hence the autocommit engine.
        with autocommit_engine().connect() as connection:
            for table in tables:
                connection.execute(text(f"VACUUM (ANALYZE) {table}"))  # the caller's names
        return list(tables)

    # -- settled status counts -----------------------------------------------------------

    def settle_counts(self, margin: timedelta) -> int:
        return in_transaction(lambda c: _settle(c, margin), "settling status counts")

    def rebuild_counts(self, margin: timedelta) -> int:
        def work(connection: Connection) -> int:
            connection.execute(cq.LOCK_WATERMARK)
            for statement in cq.FORGET_ALL:
                connection.execute(statement)
            connection.execute(cq.MOVE_WATERMARK, {"upto": cq.EPOCH})
            return _settle(connection, margin)

        return in_transaction(work, "rebuilding status counts")

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[Connection]:
        read = engine().execution_options(isolation_level="REPEATABLE READ")
        with read.connect() as connection, connection.begin():
            yield connection

    def status_counts(self, *, tenant: str | None, since: datetime | None) -> list[Any]:
        read = engine().execution_options(isolation_level="REPEATABLE READ")
        with read.connect() as connection, connection.begin():  # one snapshot for all parts
            settled = connection.execute(cq.READ_WATERMARK).scalar_one()
            if since is None:
                params = {"tenant": tenant, "settled": settled, "since": cq.EPOCH}
                return list(connection.execute(cq.COUNTS_ALL_TIME, params))
            moment = since if since.tzinfo else since.replace(tzinfo=UTC)  # naive: UTC
            hour = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            whole_hours_from = hour if hour == moment else hour + timedelta(hours=1)
            params = {
                "tenant": tenant,
                "settled": settled,
                "since": moment,
                "whole_hours_from": whole_hours_from,
            }
            return list(connection.execute(cq.COUNTS_SINCE, params))

    def status_counts_per_tenant(self) -> list[Any]:
        read = engine().execution_options(isolation_level="REPEATABLE READ")
        with read.connect() as connection, connection.begin():  # one snapshot for both parts
            settled = connection.execute(cq.READ_WATERMARK).scalar_one()
            return list(connection.execute(cq.COUNTS_PER_TENANT, {"settled": settled}))

    # -- the fast path ---------------------------------------------------------------

    def record_queued(self, job: NewJob, *, actor: Actor, steps: Sequence[NewStep]) -> bool:
        if steps or not _plain(job):
            # a chain's steps, a key or a firing that may conflict: the shared statements
            return super().record_queued(job, actor=actor, steps=steps)
        created = RECORD_QUEUED.first_row(_queued_args(job, actor), f"job {job.id} queued")
        return created is not None

    def record_queued_meanwhile(
        self, job: NewJob, *, actor: Actor, meanwhile: Callable[[], T]
    ) -> tuple[bool, T]:
        """RECORD_QUEUED on the process's non-blocking connection, ``meanwhile()`` run
        while PostgreSQL commits it (:mod:`app.ledger.engines.overlapped`)."""
        if not _plain(job):
            return super().record_queued_meanwhile(job, actor=actor, meanwhile=meanwhile)
        created, made = OVERLAPPED.first_row(
            RECORD_QUEUED, _queued_args(job, actor), f"job {job.id} queued", meanwhile
        )
        return created is not None, made

    def insert_queued_many(
        self, connection: Connection, jobs_: Sequence[NewJob], *, actor: Actor
    ) -> set[uuid.UUID]:
        by = attribution.current()
        params: dict[str, Any] = {
            name: _column(name, kind, [getattr(job, name) for job in jobs_])
            for name, kind in _MANY_COLUMNS
        }
        params.update(
            count=len(jobs_),
            message=clean("message", f"queued by {actor}"),
            actor=actor,
            actor_name=clean("actor_name", by.name),
            operation_id=by.operation_id,
        )
        return {row[0] for row in connection.exec_driver_sql(RECORD_QUEUED_MANY, params)}

    def start(self, job_id: uuid.UUID, execution: Execution, *, takeover: str | None) -> int | None:
        config = settings()
        moved = RECORD_STARTED.first_row(
            (
                str(job_id),
                execution.execution_id,
                execution.celery_task_id,
                execution.worker,
                REDELIVERED,
                f"started on {execution.worker}",
                execution.worker_pid,
                float(config.lifeline_timeout),
                takeover,
                config.max_lost_executions,
                execution.queue,
                execution.started_at,
            ),
            f"start of job {job_id}",
        )
        return None if moved is None else int(moved[1])

    def may_start(self, job_id: uuid.UUID, execution: Execution) -> MayStart | None:
        row = MAY_START.first_row(
            (
                str(job_id),
                execution.execution_id,
                execution.celery_task_id,
                settings().max_lost_executions,
            ),
            f"start of job {job_id}",
        )
        return None if row is None else MayStart(S(row[0]), int(row[1]), row[2])

    def start_and_finish(
        self,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        source: JobStatus,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> bool:
        args = _started_finished(job_id, execution, target, result, errors, result_url)
        row = RECORD_STARTED_FINISHED.first_row(
            (*args, message, source.value), f"job {job_id} {target}"
        )
        return row is not None

    def outcome_row(
        self,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        source: JobStatus,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> tuple[Any, ...] | None:
        args = _started_finished(job_id, execution, target, result, errors, result_url)
        _, bound = RECORD_STARTED_FINISHED.execute_sql((*args, message, source.value))
        return bound[:3] + bound[4:]  # the max lost executions is one for the batch

    def start_and_finish_many(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, str]]:
        if not rows:
            return set()
        arrays = tuple(list(column) for column in zip(*rows, strict=True))
        moved = RECORD_STARTED_FINISHED_MANY.all_rows(
            (*arrays, settings().max_lost_executions), f"outcomes of {len(rows)} jobs"
        )
        return {(str(job_id), execution_id) for job_id, execution_id in moved}

    def finish(
        self,
        job_id: uuid.UUID,
        *,
        execution_id: str,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> bool:
        if target not in FINISHED:
            raise ValueError(f"a finish moves to one of {FINISHED}, not {target}")
        row = RECORD_FINISHED.first_row(
            (str(job_id), execution_id, target.value, result, errors, result_url, message),
            f"job {job_id} {target}",
        )
        return row is not None


def _column(name: str, kind: str, values: list[Any]) -> list[Any]:
    """One column of RECORD_QUEUED_MANY as bound: each value as the ledger stores it
    (:func:`~app.ledger.rules.sanitise.clean`), ids as text, documents as JSON."""
    if kind == "uuid":
        return [None if value is None else str(value) for value in values]
    cleaned = [clean(name, value) for value in values]
    if kind == "jsonb":
        return [json.dumps(value) for value in cleaned]
    return cleaned


def _settle(connection: Connection, margin: timedelta) -> int:
    since = connection.execute(cq.LOCK_WATERMARK).scalar_one()
    upto = connection.execute(text("SELECT now() - :margin"), {"margin": margin}).scalar_one()
    if upto <= since:
        return 0
    added = int(connection.execute(cq.SETTLE, {"since": since, "upto": upto}).scalar_one())
    connection.execute(cq.MOVE_WATERMARK, {"upto": upto})
    for statement in cq.DROP_EMPTY:  # rows whose every job was purged or retried
        connection.execute(statement)
    return added


def _plain(job: NewJob) -> bool:
    """A job RECORD_QUEUED records: no key or firing that may conflict."""
    return job.idempotency_key is None and job.definition_id is None


def _queued_args(job: NewJob, actor: Actor) -> tuple[Any, ...]:
    """RECORD_QUEUED's arguments for ``job``."""
    by = attribution.current()
    return (
        str(job.id),
        job.type,
        job.tenant,
        job.subject,
        job.payload,
        job.trigger,
        job.created_by,
        job.celery_task_id,
        job.queue,
        None if job.parent_job_id is None else str(job.parent_job_id),
        job.metadata,
        f"queued by {actor}",
        actor,
        job.priority,
        by.name,
        by.operation_id,
    )


def _started_finished(
    job_id: uuid.UUID,
    execution: Execution,
    target: JobStatus,
    result: dict[str, Any] | None,
    errors: list[dict[str, Any]],
    result_url: str | None,
) -> tuple[Any, ...]:
    """RECORD_STARTED_FINISHED's $1…$13 (its messages and source follow)."""
    if target not in FINISHED:
        raise ValueError(f"a finish moves to one of {FINISHED}, not {target}")
    if execution.started_at is None:
        raise ValueError("a start written with its outcome needs its true start time")
    return (
        str(job_id),
        execution.execution_id,
        execution.celery_task_id,
        settings().max_lost_executions,
        target.value,
        execution.worker,
        execution.worker_pid,
        execution.queue,
        result,
        errors,
        result_url,
        execution.started_at,
        f"started on {execution.worker}",
    )
