"""The statement families both engines share, written once in SQLAlchemy Core.

:class:`CoreEngine` implements every transition of :class:`~app.ledger.engines.base.Engine`
with the statements of :mod:`app.ledger.engines.queries`: one guarded ``UPDATE … WHERE
status IN (PREDECESSORS[target])`` plus its event row(s). What differs by database is
left abstract (each engine supplies it), and an engine may replace a family with a
faster statement of its own (the PostgreSQL fast path) as long as it keeps the same
guards and events — the contract suite holds both to that.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, case, func, select

from app.config import settings
from app.db import in_transaction
from app.ledger.engines import queries as q
from app.ledger.engines.base import (
    REDELIVERED,
    Engine,
    Execution,
    MayStart,
    NewJob,
    NewStep,
    Ref,
    aware,
)
from app.ledger.rules import attribution
from app.ledger.rules.actors import Actor
from app.ledger.rules.naming import run_name
from app.ledger.rules.sanitise import clean, clean_row
from app.ledger.rules.states import PREDECESSORS, START_SOURCES, JobStatus
from models.tables import counters, events, jobs, steps

S = JobStatus


class CoreEngine(Engine):
    """The generic implementation of every statement family (see the module docstring)."""

    # -- publish, start, finish ------------------------------------------------------

    def record_queued(self, job: NewJob, *, actor: Actor, steps: Sequence[NewStep]) -> bool:
        def work(connection: Connection) -> bool:
            stamp, sequence = connection.execute(self._bump_counter()).one()
            created = connection.execute(
                q.insert_jobs(self.insert(jobs), [job_row(job, run_name(stamp, sequence))])
            ).first()
            if created is None:
                return False
            if steps:
                connection.execute(
                    q.insert_steps(
                        [
                            {
                                "id": step.id,
                                "job_id": job.id,
                                "position": step.position,
                                "step_type": step.step_type,
                                "status": S.QUEUED.value,
                                "celery_task_id": step.celery_task_id,
                            }
                            for step in steps
                        ]
                    )
                )
            created_events = [
                event(Ref(job.id), None, S.QUEUED, actor=actor, message=f"queued by {actor}")
            ]
            created_events += [
                event(
                    Ref(job.id, s.id),
                    None,
                    S.QUEUED,
                    actor=actor,
                    message=f"step {s.position} queued",
                )
                for s in steps
            ]
            connection.execute(q.insert_events(created_events))
            return True

        return in_transaction(work, f"job {job.id} queued")

    def record_queued_many(self, jobs_: Sequence[NewJob], *, actor: Actor) -> set[uuid.UUID]:
        def work(connection: Connection) -> set[uuid.UUID]:
            created = self.insert_queued_many(connection, jobs_, actor=actor)
            if len(created) < len(jobs_) and any(job.idempotency_key for job in jobs_):
                # keys partly taken: a batch racing under one key was made with another
                # request. None of this batch may exist (its caller finds the conflict)
                raise _KeysTaken
            return created

        try:
            return in_transaction(work, f"{len(jobs_)} jobs queued")
        except _KeysTaken:
            return set()

    def insert_queued_many(
        self, connection: Connection, jobs_: Sequence[NewJob], *, actor: Actor
    ) -> set[uuid.UUID]:
        """Name and insert the jobs (skipping those that conflict), and write the
        ``queued`` event of each inserted; the ids inserted. Job ``i`` of the batch takes
        the ``i``-th of the run names the batch takes together."""
        stamp, last = connection.execute(self._bump_counter(len(jobs_))).one()
        first = last - len(jobs_) + 1
        rows = [job_row(job, run_name(stamp, first + n)) for n, job in enumerate(jobs_)]
        inserted = connection.execute(
            q.insert_many_jobs(self.insert(jobs)), [clean_row(row) for row in rows]
        )
        created = {row.id for row in inserted}
        if created:
            queued = [
                event(Ref(job.id), None, S.QUEUED, actor=actor, message=f"queued by {actor}")
                for job in jobs_
                if job.id in created
            ]
            connection.execute(q.insert_many_events(), [clean_row(row) for row in queued])
        return created

    def _bump_counter(self, count: int = 1) -> Any:
        return q.bump_run_name_counter(self.insert(counters), self.second_stamp(), count)

    def start(self, job_id: uuid.UUID, execution: Execution, *, takeover: str | None) -> int | None:
        config = settings()
        running = jobs.c.status == S.RUNNING.value
        lost_now = jobs.c.lost_executions + case((running, 1), else_=0)

        def work(connection: Connection) -> int | None:
            moved = connection.execute(
                q.move(
                    jobs,
                    job_id,
                    S.RUNNING,
                    {**_start_values(execution), "lost_executions": lost_now},
                    jobs.c.cancel_requested_at.is_(None),
                    jobs.c.celery_task_id.is_(None)
                    | (jobs.c.celery_task_id == execution.celery_task_id),
                    # a duplicate prerun of the same execution is not a new start
                    jobs.c.execution_id.is_(None) | (jobs.c.execution_id != execution.execution_id),
                    # a running job is taken over only when its execution is lost
                    ~running
                    | (jobs.c.execution_id == takeover)
                    | (
                        func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at)
                        < self.seconds_ago(config.lifeline_timeout)
                    ),
                    lost_now < config.max_lost_executions,
                    sources=sorted(s.value for s in START_SOURCES),
                )
            ).first()
            if moved is None:
                return None
            previous = S(moved.previous_status)
            self._start_events(
                connection,
                Ref(job_id),
                previous,
                moved.attempts,
                execution.worker,
                at=None if previous is S.RUNNING else execution.started_at,
            )
            return int(moved.attempts)

        return in_transaction(work, f"start of job {job_id}")

    def may_start(self, job_id: uuid.UUID, execution: Execution) -> MayStart | None:
        def read(connection: Connection) -> MayStart | None:
            row = connection.execute(
                select(jobs.c.status, jobs.c.attempts, func.now()).where(
                    jobs.c.id == job_id, *_lazy_start_guards(execution)
                )
            ).first()
            return None if row is None else MayStart(S(row[0]), int(row[1]) + 1, aware(row[2]))

        return in_transaction(read, f"start of job {job_id}")

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
        if target not in (S.SUCCEEDED, S.PARTIAL):
            raise ValueError(f"a finish moves to succeeded or partial, not {target}")

        def work(connection: Connection) -> bool:
            if not self._start_late(connection, job_id, execution, source=source):
                return False
            return self._move(
                connection,
                Ref(job_id),
                target,
                _finished(result, errors, result_url),
                actor="worker",
                message=message,
                execution_id=execution.execution_id,
                worker=execution.worker,
            )

        return in_transaction(work, f"job {job_id} {target}")

    def lose_before_start(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        reason: str,
        actor: Actor,
    ) -> bool:
        if not self.start_unwritten(connection, job_id, execution):
            return False
        return self.lose(
            connection,
            Ref(job_id),
            reason=reason,
            actor=actor,
            worker=execution.worker,
            execution_id=execution.execution_id,
        )

    def start_unwritten(
        self, connection: Connection, job_id: uuid.UUID, execution: Execution
    ) -> bool:
        # the worker's clock dates it: never before the job's last move (its CHECKs and
        # the order of its events hold even when that clock is behind the database's)
        last = connection.execute(
            select(
                jobs.c.updated_at,
                select(func.max(events.c.created_at))
                .where(events.c.job_id == job_id)
                .scalar_subquery(),
            ).where(jobs.c.id == job_id)
        ).first()
        if last is None:
            return False
        latest = max(aware(moment) for moment in last if moment is not None)
        if execution.started_at is not None and latest > execution.started_at:
            execution = dataclasses.replace(execution, started_at=latest)
        return self._start_late(connection, job_id, execution)

    def _start_late(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        source: JobStatus | None = None,
    ) -> bool:
        """The start of an execution that began at ``execution.started_at`` and was not
        written then: under the lazy start's guards (never a takeover; only from
        ``source`` when given), its event dated then. Only ever followed by the
        execution's end in the same transaction."""
        moved = connection.execute(
            q.move(
                jobs,
                job_id,
                S.RUNNING,
                _start_values(execution),
                *_lazy_start_guards(execution),
                sources=None if source is None else q.allowed_from(S.RUNNING, [source]),
            )
        ).first()
        if moved is None:
            return False
        self._start_events(
            connection,
            Ref(job_id),
            S(moved.previous_status),
            moved.attempts,
            execution.worker,
            at=execution.started_at,
        )
        return True

    def _start_events(
        self,
        connection: Connection,
        ref: Ref,
        previous: JobStatus,
        attempt: int,
        worker: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """``previous -> running``, or ``running -> retrying -> running`` when the row was
        running already (its execution was lost)."""
        rows = []
        if previous is S.RUNNING:
            rows.append(
                event(
                    ref,
                    S.RUNNING,
                    S.RETRYING,
                    actor="worker",
                    message=REDELIVERED,
                    attempt=attempt - 1,
                    worker=worker,
                )
            )
            previous = S.RETRYING
        started = f"started on {worker}"
        rows.append(
            event(
                ref,
                previous,
                S.RUNNING,
                actor="worker",
                message=started,
                attempt=attempt,
                worker=worker,
            )
        )
        if at is not None:  # a start written after the body began: dated when it began
            rows[-1]["created_at"] = at
        connection.execute(q.insert_events(rows))

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
        return in_transaction(
            lambda connection: self._move(
                connection,
                Ref(job_id),
                target,
                _finished(result, errors, result_url),
                actor="worker",
                message=message,
                execution_id=execution_id,
                worker_of_row=True,  # as the fast path: the worker of the execution
            ),
            f"job {job_id} {target}",
        )

    # -- inside the caller's transaction ----------------------------------------------

    def job_state(self, connection: Connection, job_id: uuid.UUID) -> Any:
        return connection.execute(q.job_state(job_id)).first()

    def job_for_task(
        self, connection: Connection, task_id: str
    ) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        row = connection.execute(q.job_id_for_task(task_id)).first()
        return None if row is None else (row[0], row[1])

    def fail(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        errors: list[dict[str, Any]] | None = None,
        execution_id: str | None = None,
        worker: str | None = None,
        quiet_since: datetime | None = None,
        retries_exhausted: bool = False,
    ) -> bool:
        values: dict[str, Any] = {"failure_reason": reason, "completed_at": func.now()}
        if ref.step_id is None:  # a step's errors are its parent's
            values["errors"] = errors or []
            values["retries_exhausted"] = retries_exhausted
        return self._move(
            connection,
            ref,
            S.FAILED,
            values,
            actor=actor,
            message=reason,
            execution_id=execution_id,
            worker=worker,
            guards=_quiet_since(quiet_since),
        )

    def retrying(self, connection: Connection, ref: Ref, *, execution_id: str, reason: str) -> bool:
        return self._move(
            connection,
            ref,
            S.RETRYING,
            {},
            actor="worker",
            message=reason,
            execution_id=execution_id,
        )

    def cancel(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        execution_id: str | None = None,
        worker: str | None = None,
        only_from: Collection[JobStatus] | None = None,
    ) -> bool:
        values = {"completed_at": func.now(), "failure_reason": reason}
        return self._move(
            connection,
            ref,
            S.CANCELED,
            values,
            actor=actor,
            message=reason,
            execution_id=execution_id,
            worker=worker,
            sources=None if only_from is None else q.allowed_from(S.CANCELED, only_from),
        )

    def lose(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        worker: str | None,
        on_worker: str | None = None,
        worker_pid: int | None = None,
        execution_id: str | None = None,
        celery_task_id: str | None = None,
    ) -> bool:
        table = _table(ref)
        guards: list[ColumnElement[bool]] = []
        if on_worker is not None:
            guards.append(table.c.worker == on_worker)
        if worker_pid is not None:
            guards.append(table.c.worker_pid == worker_pid)
        if celery_task_id is not None:
            guards.append(table.c.celery_task_id == celery_task_id)
        guards.append(table.c.status == S.RUNNING.value)  # whatever else may go to retrying
        values = {"lost_executions": table.c.lost_executions + 1, "execution_id": None}
        return self._move(
            connection,
            ref,
            S.RETRYING,
            values,
            actor=actor,
            message=reason,
            execution_id=execution_id,
            worker=worker,
            guards=guards,
        )

    def orphan(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        celery_task_id: str,
        quiet_since: datetime,
        actor: Actor,
    ) -> bool:
        values = {
            "celery_task_id": celery_task_id,
            "execution_id": None,
            "lost_executions": jobs.c.lost_executions + 1,
        }
        return self._move(
            connection,
            Ref(job_id),
            S.RETRYING,
            values,
            actor=actor,
            message="no heartbeat from its worker: delivering it again",
            guards=[jobs.c.status == S.RUNNING.value, *_quiet_since(quiet_since)],
        )

    def requeue(
        self, connection: Connection, job_id: uuid.UUID, *, celery_task_id: str, actor: Actor
    ) -> bool:
        values = {
            "celery_task_id": celery_task_id,
            "execution_id": None,
            "cancel_requested_at": None,
            "completed_at": None,
            "started_at": None,
            "failure_reason": None,
            "progress": 0,
            "progress_message": None,
            "lost_executions": 0,
            "retries_exhausted": False,
        }
        message = f"retry requested by {_who(actor)}"
        return self._move(connection, Ref(job_id), S.QUEUED, values, actor=actor, message=message)

    def request_cancel(
        self, connection: Connection, job_id: uuid.UUID, *, reason: str, actor: Actor
    ) -> bool:
        if connection.execute(q.request_cancel(job_id, reason)).first() is None:
            return False
        message = f"cancel requested by {_who(actor)}: {reason}"
        self.append_log(connection, Ref(job_id), message=message, level="warning")
        return True

    def checkpoint(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        execution_id: str | None,
        progress: int | None = None,
        message: str | None = None,
    ) -> Any:
        return connection.execute(q.checkpoint(job_id, execution_id, progress, message)).first()

    def merge_metadata(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        execution_id: str | None,
        values: dict[str, Any],
    ) -> bool:
        merged = self.json_merge(jobs.c["metadata"], clean("metadata", values))
        return connection.execute(q.merge_metadata(job_id, execution_id, merged)).rowcount > 0

    def append_log(self, connection: Connection, ref: Ref, *, message: str, level: str) -> None:
        values = {"job_id": ref.job_id, "step_id": ref.step_id, "level": level, "message": message}
        connection.execute(q.insert_log(values))

    def record_file(
        self,
        connection: Connection,
        ref: Ref,
        *,
        direction: Literal["in", "out"],
        uri: str,
        size: int | None,
        sha256: str | None,
        records: int | None,
    ) -> None:
        values = {
            "job_id": ref.job_id,
            "step_id": ref.step_id,
            "direction": direction,
            "uri": uri,
            "bytes": size,
            "sha256": sha256,
            "records": records,
        }
        connection.execute(q.insert_file(values))

    def finish_steps(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        target: JobStatus,
        reason: str,
        actor: Actor,
        after_position: int = 0,
    ) -> None:
        values = {"completed_at": func.now(), "failure_reason": reason}
        moved = connection.execute(q.move_steps(job_id, target, values, after_position)).all()
        if moved:
            connection.execute(
                q.insert_events(
                    [
                        event(
                            Ref(job_id, row.id),
                            S(row.previous_status),
                            target,
                            actor=actor,
                            message=reason,
                            attempt=row.attempts,
                        )
                        for row in moved
                    ]
                )
            )

    # -- steps of a chained job ----------------------------------------------------------

    def lock_job(self, connection: Connection, job_id: uuid.UUID) -> Any:
        return connection.execute(q.lock_job(job_id)).first()

    def step_state(self, connection: Connection, step_id: uuid.UUID) -> Any:
        return connection.execute(q.step_state(step_id)).first()

    def start_step(
        self, connection: Connection, ref: Ref, execution: Execution, *, lost: bool
    ) -> int | None:
        assert ref.step_id is not None
        moved = connection.execute(
            q.move(
                steps,
                ref.step_id,
                S.RUNNING,
                {
                    "attempts": steps.c.attempts + 1,
                    "execution_id": execution.execution_id,
                    "worker": execution.worker,
                    "worker_pid": execution.worker_pid,
                    "lost_executions": steps.c.lost_executions + (1 if lost else 0),
                    "started_at": func.coalesce(steps.c.started_at, func.now()),
                },
                steps.c.celery_task_id == execution.celery_task_id,
                steps.c.execution_id.is_(None) | (steps.c.execution_id != execution.execution_id),
                sources=sorted(s.value for s in START_SOURCES),
            )
        ).first()
        if moved is None:
            return None
        previous = S(moved.previous_status)
        self._start_events(connection, ref, previous, moved.attempts, execution.worker)
        return int(moved.attempts)

    def start_parent(self, connection: Connection, job_id: uuid.UUID, *, worker: str) -> bool:
        values = {
            "attempts": jobs.c.attempts + 1,
            "worker": worker,
            "started_at": func.coalesce(jobs.c.started_at, func.now()),
            "heartbeat_at": func.now(),
        }
        return self._move(
            connection,
            Ref(job_id),
            S.RUNNING,
            values,
            actor="worker",
            message="first step started",
            worker=worker,
        )

    def finish_step(
        self,
        connection: Connection,
        ref: Ref,
        *,
        execution_id: str,
        target: JobStatus,
        result: dict[str, Any] | None,
        message: str,
        worker: str | None,
    ) -> bool:
        values = {"result": result, "completed_at": func.now(), "progress": 100}
        return self._move(
            connection,
            ref,
            target,
            values,
            actor="worker",
            message=message,
            execution_id=execution_id,
            worker=worker,
        )

    def complete_parent(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        target: JobStatus,
        result: dict[str, Any],
        errors: list[dict[str, Any]],
        result_url: str | None,
        worker: str | None,
    ) -> bool:
        values = {
            "result": result,
            "errors": errors,
            "completed_at": func.now(),
            "result_url": result_url,
            "progress": 100,
            "failure_reason": None,  # a cancel requested too late: not a failure
        }
        return self._move(
            connection,
            Ref(job_id),
            target,
            values,
            actor="worker",
            message="last step finished",
            worker=worker,
        )

    def step_checkpoint(
        self,
        connection: Connection,
        step_id: uuid.UUID,
        *,
        execution_id: str,
        progress: int | None,
    ) -> int | None:
        row = connection.execute(q.step_checkpoint(step_id, execution_id, progress)).first()
        return None if row is None else int(row.position)

    def step_summary(self, connection: Connection, job_id: uuid.UUID) -> Sequence[Any]:
        return connection.execute(q.step_summary(job_id)).all()

    # -- the one guarded move ----------------------------------------------------------

    def _move(
        self,
        connection: Connection,
        ref: Ref,
        target: JobStatus,
        values: dict[str, Any],
        *,
        actor: Actor,
        message: str,
        execution_id: str | None = None,
        worker: str | None = None,
        sources: list[str] | None = None,
        guards: Sequence[ColumnElement[bool]] = (),
        worker_of_row: bool = False,
    ) -> bool:
        """The guarded move of a job or step and its event row; False when nothing moved.
        The event names ``worker``, or with ``worker_of_row`` the row's own."""
        table = _table(ref)
        conditions = list(guards)
        if execution_id is not None:
            conditions.append(table.c.execution_id == execution_id)
        row_id = ref.job_id if ref.step_id is None else ref.step_id
        statement = q.move(table, row_id, target, values, *conditions, sources=sources)
        if worker_of_row:
            statement = statement.returning(table.c.worker)
        moved = connection.execute(statement).first()
        if moved is None:
            return False
        if worker_of_row:
            worker = moved.worker
        source = S(moved.previous_status)
        row = event(
            ref, source, target, actor=actor, message=message, attempt=moved.attempts, worker=worker
        )
        connection.execute(q.insert_events([row]))
        return True

    def database_now(self, connection: Connection) -> datetime:
        return aware(connection.execute(select(func.now())).scalar_one())


def _who(actor: Actor) -> str:
    """``api (ci-key)``: the tool and, when known, the key or operator using it."""
    name = attribution.current().name
    return f"{actor} ({name})" if name else actor


def _start_values(execution: Execution) -> dict[str, Any]:
    """What a start writes on the job's row for ``execution`` (``started_at``: the first
    start's, else the execution's true start, else now)."""
    started = func.now() if execution.started_at is None else execution.started_at
    return {
        "attempts": jobs.c.attempts + 1,
        "execution_id": execution.execution_id,
        "celery_task_id": execution.celery_task_id,
        "worker": execution.worker,
        "worker_pid": execution.worker_pid,
        "started_at": func.coalesce(jobs.c.started_at, started),
        "heartbeat_at": func.now(),
        **({"queue": execution.queue} if execution.queue else {}),
    }


def _lazy_start_guards(execution: Execution) -> list[ColumnElement[bool]]:
    """The guard of a start written late (and of the read that allows it): those of
    :meth:`CoreEngine.start` for a job no execution is running (never a takeover)."""
    return [
        jobs.c.status.in_(sorted(s.value for s in PREDECESSORS[S.RUNNING])),
        jobs.c.cancel_requested_at.is_(None),
        jobs.c.celery_task_id.is_(None) | (jobs.c.celery_task_id == execution.celery_task_id),
        jobs.c.execution_id.is_(None) | (jobs.c.execution_id != execution.execution_id),
        jobs.c.lost_executions < settings().max_lost_executions,
    ]


def _table(ref: Ref) -> Any:
    return jobs if ref.step_id is None else steps


def _quiet_since(moment: datetime | None) -> list[ColumnElement[bool]]:
    """Guard: no heartbeat (nor any update) since ``moment``."""
    if moment is None:
        return []
    return [func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at) < moment]


def job_row(job: NewJob, name: str) -> dict[str, Any]:
    """The ``jobs`` row of a new job (the fast path binds the same values)."""
    return {
        "id": job.id,
        "name": name,
        "type": job.type,
        "status": S.QUEUED.value,
        "tenant": job.tenant,
        "subject": job.subject,
        # the message keeps the real values; the ledger, read widely, stores them sanitised
        "payload": job.payload,
        "trigger": job.trigger,
        "created_by": job.created_by,
        "celery_task_id": job.celery_task_id,
        "queue": job.queue,
        "priority": job.priority,
        "parent_job_id": job.parent_job_id,
        "metadata": job.metadata,
        "idempotency_key": job.idempotency_key,
        "request_digest": job.request_digest,
        "definition_id": job.definition_id,
        "definition_version": job.definition_version,
        "scheduled_for": job.scheduled_for,
    }


def event(
    ref: Ref,
    source: JobStatus | None,
    target: JobStatus,
    *,
    actor: Actor,
    message: str,
    attempt: int = 0,
    worker: str | None = None,
) -> dict[str, Any]:
    """One ``job_events`` row (sanitised by :func:`~app.ledger.engines.queries.insert_events`),
    attributed to the key and bulk operation acting now (:mod:`app.ledger.rules.attribution`)."""
    by = attribution.current()
    return {
        "job_id": ref.job_id,
        "step_id": ref.step_id,
        "from_status": None if source is None else source.value,
        "to_status": target.value,
        "message": message,
        "attempt": attempt,
        "worker": worker,
        "actor": actor,
        "actor_name": by.name,
        "operation_id": by.operation_id,
    }


class _KeysTaken(Exception):
    """Rolls back a batch whose idempotency keys are partly another request's."""


def _finished(
    result: dict[str, Any] | None, errors: list[dict[str, Any]], result_url: str | None
) -> dict[str, Any]:
    """The columns a finish (``succeeded`` or ``partial``) writes."""
    return {
        "result": result,
        "errors": errors,
        "completed_at": func.now(),
        "result_url": result_url,
        "failure_reason": None,  # a cancel requested too late leaves its reason
        "progress": 100,  # finished, every item processed (some may have failed)
    }
