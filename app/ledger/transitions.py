"""One function per transition: the only way a job (or a step) changes.

Signals, the task base class, the CLI, the API, beat, the lifeline and the purge all call
these. Each is one transaction holding one guarded ``UPDATE … WHERE status IN (allowed)``
plus its event row(s). Zero rows updated means the call was stale, duplicated or illegal
(a late signal, a redelivery of a finished job, a revoke racing a finish): nothing is
written and the function says so in its return value, so a job never moves backwards and
never gets two events for one transition.

Worker-side transitions carry an ``execution_id`` (one per start of the body): a late
signal of an earlier execution cannot finish, retry or cancel a newer one.

Texts and documents are handed over raw: the statements sanitise every column they
store (:mod:`app.ledger.rules.sanitise`), so nothing here redacts or truncates.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, case, func, select

from app.config import settings
from app.db import in_transaction, is_postgresql
from app.exceptions import InvalidJobId
from app.ledger.engines import queries as q
from app.ledger.rules.naming import run_name
from app.ledger.rules.sanitise import MAX_TEXT as MAX_TEXT  # the limit of a stored text
from app.ledger.rules.states import LIVE, PREDECESSORS, TERMINAL, JobStatus

S = JobStatus
Actor = Literal["producer", "worker", "beat", "api", "cli", "lifeline", "purge"]
Trigger = Literal["producer", "beat", "api", "retry"]

#: Event message of a start that finds the job running: its previous execution was lost.
REDELIVERED = (
    "the previous execution ended without an outcome (worker lost or message delivered "
    "again); starting again"
)


@dataclass(frozen=True)
class NewJob:
    """What the ledger needs to record a job at publish."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    tenant: str = "default"
    subject: str | None = None
    trigger: Trigger = "producer"
    created_by: str | None = None
    celery_task_id: str | None = None
    queue: str | None = None
    parent_job_id: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The producer's "this request, once" key (unique per tenant) and its request's digest.
    idempotency_key: str | None = None
    request_digest: str | None = None


@dataclass(frozen=True)
class NewStep:
    """One ordered step of a chained job, recorded with its parent."""

    id: uuid.UUID
    position: int
    step_type: str
    celery_task_id: str


@dataclass(frozen=True)
class Start:
    """The verdict of :func:`record_started`: run the body, or why not."""

    run: bool
    attempt: int
    reason: str = ""
    #: Not now, but the message must not be dropped: another execution of the job is
    #: alive (this delivery is a copy); deliver it again later.
    defer: bool = False
    #: Set by the first look only: the job runs as execution ``holder_execution`` on
    #: worker ``holder``, whose heartbeat is fresh; alive unless that worker is gone.
    holder: str | None = None
    holder_execution: str | None = None


def lost_executions_reason(lost: int) -> str:
    """``failure_reason`` of a job whose executions all died (a poison message)."""
    return (
        f"its worker process died in each of {lost} executions (killed, or out of memory): "
        "not run again. Look for the cause in the worker's log and the system log (OOM "
        "killer), make the job smaller or give the worker more memory, then "
        "`jobledger retry <job>`"
    )


def as_job_id(value: uuid.UUID | str) -> uuid.UUID:
    """A job id as a UUID; anything else is refused with :class:`InvalidJobId`."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidJobId(value) from None


def record_queued(job: NewJob, *, actor: Actor = "producer", steps: list[NewStep] = ()) -> bool:  # type: ignore[assignment]
    """Record a new job (and its steps) as ``queued`` with its creation event.

    The payload, subject and metadata are stored sanitised (secrets never enter the
    ledger); a manual retry of a job whose payload held secrets must therefore be
    submitted again by its producer.

    Returns False when a job with this id exists already (publishing an id twice is a
    no-op, so a retry or a redelivered publish never makes a second row), or when the
    job's tenant used its idempotency key already (:mod:`app.ledger.idempotency`; such
    jobs take the generic path, whose insert skips either conflict).
    """
    if not steps and job.idempotency_key is None and is_postgresql():
        created = q.PG_RECORD_QUEUED.first_row(
            (
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
            ),
            f"job {job.id} queued",
        )
        return created is not None

    def work(connection: Connection) -> bool:
        stamp, sequence = connection.execute(q.bump_run_name_counter(connection)).one()
        created = connection.execute(
            q.insert_job(connection, _job_row(job, run_name(stamp, sequence)))
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
        connection.execute(
            q.insert_events(
                [event_row(job.id, None, S.QUEUED, actor, f"queued by {actor}", 0)]
                + [
                    event_row(job.id, None, S.QUEUED, actor, f"step {s.position} queued", 0, s.id)
                    for s in steps
                ]
            )
        )
        return True

    return in_transaction(work, f"job {job.id} queued")


def record_queued_many(jobs: list[NewJob], *, actor: Actor = "producer") -> set[uuid.UUID]:
    """Record many new jobs ``queued`` in one transaction of three statements (names,
    jobs, events), whatever their number: the bulk enqueue path. Returns the ids created
    (ids that existed already are skipped, as in :func:`record_queued`)."""
    if not jobs:
        return set()

    def work(connection: Connection) -> set[uuid.UUID]:
        stamp, last = connection.execute(q.bump_run_name_counter(connection, len(jobs))).one()
        first = last - len(jobs) + 1
        rows = [_job_row(job, run_name(stamp, first + n)) for n, job in enumerate(jobs)]
        created = {row.id for row in connection.execute(q.insert_jobs(connection, rows))}
        if created:
            connection.execute(
                q.insert_events(
                    [
                        event_row(job.id, None, S.QUEUED, actor, f"queued by {actor}", 0)
                        for job in jobs
                        if job.id in created
                    ]
                )
            )
        return created

    return in_transaction(work, f"{len(jobs)} jobs queued")


def _job_row(job: NewJob, name: str) -> dict[str, Any]:
    """The ``jobs`` row of a new job (the generic path; the fast path binds the same)."""
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
        "parent_job_id": job.parent_job_id,
        "metadata": job.metadata,
        "idempotency_key": job.idempotency_key,
        "request_digest": job.request_digest,
    }


def record_started(
    job_id: uuid.UUID,
    *,
    celery_task_id: str,
    execution_id: str,
    worker: str,
    worker_pid: int | None = None,
    unknown_job: Callable[[], NewJob] | None = None,
    is_alive: Callable[[str], bool] | None = None,
    takeover: str | None = None,
) -> Start:
    """Move a job to ``running`` for a new execution (attempts += 1), or say why its body
    must not run: canceled (the durable cancel), already finished, a stale message,
    another execution alive (``defer``), or too many lost executions (it is failed).

    A job whose previous execution was lost is ``running`` already: that is recorded as
    ``running -> retrying -> running`` and counts a lost execution (a loss the worker or
    the lifeline recorded has moved it to ``retrying`` already, and was counted then).
    The previous execution is lost when its heartbeat is older than the lifeline timeout
    or ``is_alive(its worker)`` says no; without ``is_alive`` the caller cannot tell and
    it is taken as lost. When the lost executions reach ``JOBLEDGER_MAX_LOST_EXECUTIONS``
    the job is failed instead of run. A job with no row (its producer had no ledger
    access) is created from what ``unknown_job()`` describes (called only then: the start
    stays cheap).
    """
    job_id = as_job_id(job_id)
    config = settings()

    if is_postgresql():
        moved = q.PG_RECORD_STARTED.first_row(
            (
                str(job_id),
                execution_id,
                celery_task_id,
                worker,
                REDELIVERED,
                f"started on {worker}",
                worker_pid,
                float(config.lifeline_timeout),
                takeover,
                config.max_lost_executions,
            ),
            f"start of job {job_id}",
        )
        if moved is not None:
            return Start(run=True, attempt=moved[1])
        verdict = in_transaction(
            lambda c: _why_not_started(c, job_id, celery_task_id, execution_id, worker, takeover),
            f"start of job {job_id}",
        )
    else:
        verdict = in_transaction(
            lambda c: _start(c, job_id, celery_task_id, execution_id, worker, worker_pid, takeover),
            f"start of job {job_id}",
        )
    again = functools.partial(
        record_started,
        job_id,
        celery_task_id=celery_task_id,
        execution_id=execution_id,
        worker=worker,
        worker_pid=worker_pid,
    )
    if verdict.reason == "unknown" and unknown_job is not None:
        record_queued(unknown_job(), actor="worker")
        return again(is_alive=is_alive)
    # the retry asks again: another delivery may have taken over meanwhile, alive
    return resolve_holder(
        verdict, is_alive, lambda takeover: again(takeover=takeover, is_alive=is_alive)
    )


def resolve_holder(
    verdict: Start,
    is_alive: Callable[[str], bool] | None,
    take_over: Callable[[str | None], Start],
) -> Start:
    """A start that found another execution with a fresh heartbeat: defer this delivery
    if that execution's worker is alive, else start again taking the execution over as
    lost (``take_over(its execution id)``). Any other verdict is returned as is."""
    if verdict.holder is None:
        return verdict
    if is_alive is None or not is_alive(verdict.holder):
        return take_over(verdict.holder_execution)  # its worker is gone: lost
    return Start(
        run=False,
        attempt=verdict.attempt,
        defer=True,
        reason=f"execution {verdict.holder_execution} of this job is alive on "
        f"{verdict.holder} (this delivery is a second copy of its message)",
    )


def heartbeat_fresh(connection: Connection, heartbeat: datetime | None) -> bool:
    """Whether ``heartbeat`` is within the lifeline timeout (database clock)."""
    if heartbeat is None:
        return False
    since = _database_now(connection) - _seconds(settings().lifeline_timeout)
    return _aware(heartbeat) >= since


def _start(
    connection: Connection,
    job_id: uuid.UUID,
    celery_task_id: str,
    execution_id: str,
    worker: str,
    worker_pid: int | None,
    takeover: str | None,
) -> Start:
    """The generic (SQLite) start: the same guards and events as ``PG_RECORD_STARTED``."""
    config = settings()
    running = q.jobs.c.status == S.RUNNING.value
    lost_now = q.jobs.c.lost_executions + case((running, 1), else_=0)
    moved = connection.execute(
        q.move(
            q.jobs,
            job_id,
            S.RUNNING,
            {S.QUEUED, S.RETRYING, S.RUNNING},
            {
                "attempts": q.jobs.c.attempts + 1,
                "execution_id": execution_id,
                "celery_task_id": celery_task_id,
                "worker": worker,
                "worker_pid": worker_pid,
                "lost_executions": lost_now,
                "started_at": func.coalesce(q.jobs.c.started_at, func.now()),
                "heartbeat_at": func.now(),
            },
            q.jobs.c.cancel_requested_at.is_(None),
            q.jobs.c.celery_task_id.is_(None) | (q.jobs.c.celery_task_id == celery_task_id),
            # a duplicate prerun of the same execution is not a new start
            q.jobs.c.execution_id.is_(None) | (q.jobs.c.execution_id != execution_id),
            # a running job is taken over only when its execution is lost
            ~running
            | (q.jobs.c.execution_id == takeover)
            | (
                func.coalesce(q.jobs.c.heartbeat_at, q.jobs.c.updated_at)
                < q.seconds_ago(connection, config.lifeline_timeout)
            ),
            lost_now < config.max_lost_executions,
        )
    ).first()
    if moved is not None:
        record_start_events(connection, job_id, S(moved.previous_status), moved.attempts, worker)
        return Start(run=True, attempt=moved.attempts)
    return _why_not_started(connection, job_id, celery_task_id, execution_id, worker, takeover)


def record_start_events(
    connection: Connection,
    job_id: uuid.UUID,
    previous: JobStatus,
    attempt: int,
    worker: str,
    step_id: uuid.UUID | None = None,
) -> None:
    """The events of a start: ``previous -> running``, or, when the job (or step) was
    already running (its execution was lost), ``running -> retrying -> running``."""
    rows = []
    if previous is S.RUNNING:
        rows.append(
            event_row(
                job_id, S.RUNNING, S.RETRYING, "worker", REDELIVERED, attempt - 1, step_id, worker
            )
        )
        previous = S.RETRYING
    rows.append(
        event_row(
            job_id, previous, S.RUNNING, "worker", f"started on {worker}", attempt, step_id, worker
        )
    )
    connection.execute(q.insert_events(rows))


def _why_not_started(
    connection: Connection,
    job_id: uuid.UUID,
    celery_task_id: str,
    execution_id: str,
    worker: str,
    takeover: str | None = None,
) -> Start:
    state = connection.execute(q.job_state(job_id)).first()
    if state is None:
        return Start(run=False, attempt=0, reason="unknown")
    status = S(state.status)
    if status is S.RUNNING and state.execution_id == execution_id:
        return Start(run=True, attempt=state.attempts)  # the same start, reported twice
    if status in TERMINAL:
        return Start(run=False, attempt=state.attempts, reason=f"job is already {status}")
    if state.celery_task_id not in (None, celery_task_id):
        return Start(
            run=False,
            attempt=state.attempts,
            reason=f"stale message {celery_task_id}: the job now runs as {state.celery_task_id}",
        )
    config = settings()
    if (
        status is S.RUNNING
        and state.execution_id != takeover
        and heartbeat_fresh(connection, state.heartbeat)
    ):
        # Another execution showed a sign of life lately: alive, unless its worker is gone
        # (the caller asks, outside this transaction).
        return Start(
            run=False,
            attempt=state.attempts,
            holder=state.worker or "unknown",
            holder_execution=state.execution_id,
        )
    if state.cancel_requested_at is not None:
        # Live, current message, but a cancel was requested: honour it before the body runs.
        requested = state.cancel_requested_at
        reason = f"canceled before start (cancel requested at {requested:%Y-%m-%d %H:%M:%S})"
        _cancel(connection, job_id, reason, "worker", None, worker)
        return Start(run=False, attempt=state.attempts, reason=reason)
    lost = state.lost_executions + (1 if status is S.RUNNING else 0)
    if lost < config.max_lost_executions:
        # The job changed between the start's statement and this look (a heartbeat that
        # went stale in between, another start): keep the message and look again later.
        return Start(
            run=False, attempt=state.attempts, defer=True, reason="the job changed meanwhile"
        )
    # Too many lost executions: fail the job rather than lose its worker once more.
    if status is S.RUNNING:
        _record_lost(connection, job_id, REDELIVERED, "worker", worker, state.execution_id)
    reason = lost_executions_reason(lost)
    errors = [{"type": "LostExecutions", "message": reason, "lost_executions": lost}]
    values = {
        "failure_reason": reason,
        "errors": errors,
        "completed_at": func.now(),
    }
    move_and_record(connection, job_id, S.FAILED, values, "worker", reason, worker=worker)
    return Start(run=False, attempt=state.attempts, reason=reason)


def record_execution_lost(
    job_id: uuid.UUID,
    *,
    reason: str,
    worker: str,
    actor: Actor = "worker",
    worker_pid: int | None = None,
    execution_id: str | None = None,
    celery_task_id: str | None = None,
) -> bool:
    """The execution running on ``worker`` (its pool process ``worker_pid``, or execution
    ``execution_id``) died without an outcome and its message goes back to the queue:
    ``running -> retrying``, one more lost execution. Recorded by the worker's main
    process when a pool process dies, and by the lifeline when a whole worker is gone,
    before the message is delivered again, so the next delivery knows the execution is
    dead although its heartbeat is fresh. False when that execution is no longer the
    job's current one (nothing is written)."""
    job_id = as_job_id(job_id)
    guards = [q.jobs.c.worker == worker]
    if worker_pid is not None:
        guards.append(q.jobs.c.worker_pid == worker_pid)
    if celery_task_id is not None:
        guards.append(q.jobs.c.celery_task_id == celery_task_id)
    return in_transaction(
        lambda c: _record_lost(c, job_id, reason, actor, worker, execution_id, guards),
        f"lost execution of job {job_id}",
    )


def _record_lost(
    connection: Connection,
    job_id: uuid.UUID,
    message: str,
    actor: Actor,
    worker: str | None,
    execution_id: str | None,
    guards: list[ColumnElement[bool]] | None = None,
) -> bool:
    values = {"lost_executions": q.jobs.c.lost_executions + 1, "execution_id": None}
    guards = [*(guards or []), q.jobs.c.status == S.RUNNING.value]
    if execution_id is not None:
        guards.append(q.jobs.c.execution_id == execution_id)
    return move_and_record(
        connection, job_id, S.RETRYING, values, actor, message, worker=worker, guards=guards
    )


def record_finished(
    job_id: uuid.UUID,
    *,
    execution_id: str,
    result: Any,
    errors: list[dict[str, Any]] | None = None,
    result_url: str | None = None,
) -> JobStatus | None:
    """Finish the current execution: ``succeeded`` (progress 100), or ``partial`` when some
    items failed (``errors`` non-empty). Returns the status written, None when stale."""
    job_id = as_job_id(job_id)
    target = S.PARTIAL if errors else S.SUCCEEDED
    document, errors = as_document(result), errors or []
    message = f"finished with {len(errors)} item errors" if errors else "finished"
    if is_postgresql():
        row = q.PG_RECORD_FINISHED.first_row(
            (
                str(job_id),
                execution_id,
                target.value,
                document,
                errors,
                result_url,
                message,
            ),
            f"job {job_id} {target}",
        )
        moved = row is not None
    else:
        values = {
            "result": document,
            "errors": errors,
            "completed_at": func.now(),
            "result_url": result_url,
            "failure_reason": None,  # a cancel requested too late leaves its reason
            "progress": 100,  # finished, every item processed (some may have failed)
        }
        moved = _transition(job_id, target, values, "worker", message, execution_id=execution_id)
    return target if moved else None


def record_failed(
    job_id: uuid.UUID,
    *,
    reason: str,
    errors: list[dict[str, Any]] | None = None,
    actor: Actor = "worker",
    execution_id: str | None = None,
    worker: str | None = None,
    heartbeat_before: datetime | None = None,
) -> bool:
    """Fail a live job with a user-safe ``reason`` and structured ``errors`` (both stored
    sanitised).

    ``heartbeat_before`` (the lifeline) fails it only if it has not shown a sign of life
    since then, so a job that reports progress while the lifeline looks is left alone.
    """
    job_id = as_job_id(job_id)
    values = {"failure_reason": reason, "errors": errors or [], "completed_at": func.now()}

    def work(connection: Connection) -> bool:
        moved = move_and_record(
            connection,
            job_id,
            S.FAILED,
            values,
            actor,
            reason,
            execution_id,
            worker,
            guards=_quiet_since(heartbeat_before),
        )
        if moved:  # a chained job: its steps will never run (or finish) now
            finish_steps(connection, job_id, S.CANCELED, f"not run: {reason}", actor)
        return moved

    return in_transaction(work, f"job {job_id} failed")


def record_retrying(job_id: uuid.UUID, *, execution_id: str, reason: str) -> bool:
    """The current execution ended and Celery will deliver the job again."""
    job_id = as_job_id(job_id)
    return _transition(job_id, S.RETRYING, {}, "worker", reason, execution_id=execution_id)


def record_canceled(
    job_id: uuid.UUID,
    *,
    reason: str,
    actor: Actor = "worker",
    execution_id: str | None = None,
    worker: str | None = None,
) -> bool:
    """Cancel a live job now (revoked, stopped at a checkpoint, or canceled while queued)."""
    job_id = as_job_id(job_id)
    return in_transaction(
        lambda connection: _cancel(connection, job_id, reason, actor, execution_id, worker),
        f"cancel of job {job_id}",
    )


def record_requeued(job_id: uuid.UUID, *, celery_task_id: str, actor: Actor) -> bool:
    """Manual retry: a ``failed`` or ``canceled`` job goes back to ``queued`` under a new
    Celery message; its id, attempts and history stay. Publish the message after this."""
    job_id = as_job_id(job_id)
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
    }
    return _transition(job_id, S.QUEUED, values, actor, f"retry requested by {actor}")


def record_orphaned(
    job_id: uuid.UUID, *, celery_task_id: str, heartbeat_before: datetime, actor: Actor = "lifeline"
) -> bool:
    """A ``running`` job whose worker is gone (no heartbeat since ``heartbeat_before``)
    goes to ``retrying`` under a new Celery message, which the caller then publishes."""
    job_id = as_job_id(job_id)
    values = {
        "celery_task_id": celery_task_id,
        "execution_id": None,
        "lost_executions": q.jobs.c.lost_executions + 1,
    }
    return _transition(
        job_id,
        S.RETRYING,
        values,
        actor,
        "no heartbeat from its worker: delivering it again",
        guards=[q.jobs.c.status == S.RUNNING.value, *_quiet_since(heartbeat_before)],
    )


CancelOutcome = Literal["canceled", "requested", "already_requested"]


def request_cancel(job_id: uuid.UUID, *, actor: Actor, reason: str) -> CancelOutcome | JobStatus:
    """Operator cancel, durable in the ledger: a queued or retrying job is canceled now
    (a worker reaching its message later will not run it); a running job gets a cancel
    intent its next checkpoint acts on. Otherwise returns the job's (terminal) status.

    Raises:
        LookupError: no such job.
    """
    job_id = as_job_id(job_id)

    def work(connection: Connection) -> CancelOutcome | JobStatus:
        if _cancel(connection, job_id, reason, actor, None, None, live_only={S.QUEUED, S.RETRYING}):
            return "canceled"
        if connection.execute(q.request_cancel(job_id, reason)).first() is not None:
            message = f"cancel requested by {actor}: {reason}"
            log_line = {"job_id": job_id, "step_id": None, "level": "warning", "message": message}
            connection.execute(q.insert_log(log_line))
            return "requested"
        state = connection.execute(q.job_state(job_id)).first()
        if state is None:
            raise LookupError(job_id)
        status = S(state.status)
        return "already_requested" if status in LIVE else status

    return in_transaction(work, f"cancel request for job {job_id}")


def checkpoint(
    job_id: uuid.UUID, execution_id: str, progress: int | None = None, message: str | None = None
) -> str | None:
    """Heartbeat of a running execution (optionally raising its progress, never lowering
    it). Returns why the execution should stop — a cancel was requested (its reason), or
    the ledger no longer considers this execution current — or None to go on."""
    job_id = as_job_id(job_id)

    def work(connection: Connection) -> str | None:
        row = connection.execute(q.checkpoint(job_id, execution_id, progress, message)).first()
        return stop_reason(row)

    return in_transaction(work, f"progress of job {job_id}")


def note_metadata(
    connection: Connection,
    job_id: uuid.UUID,
    execution_id: str | None,
    values: dict[str, Any],
) -> bool:
    """Merge ``values`` (stored sanitised) into a running job's ``metadata``, inside the caller's
    transaction: a job body records what it has made durable in the same transaction as
    the data itself (an import's committed rows), so the two never disagree, whatever
    stops the job afterwards. False when the execution is no longer current."""
    statement = q.merge_metadata(connection, as_job_id(job_id), execution_id, values)
    return connection.execute(statement).rowcount > 0


def stop_reason(row: Any) -> str | None:
    """Why a checkpoint says stop (``row``: the job's cancel intent and reason, or None
    when the execution is no longer current), or None to go on."""
    if row is None:
        return "stopped: the ledger no longer considers this execution current"
    if row.cancel_requested_at is None:
        return None
    return str(row.failure_reason or "canceled on request")


def append_log(
    job_id: uuid.UUID, message: str, *, level: str = "info", step_id: uuid.UUID | None = None
) -> None:
    """Append a log line (stored redacted, at most 5000 characters) to a job."""
    job_id = as_job_id(job_id)
    values = {"job_id": job_id, "step_id": step_id, "level": level, "message": message}
    in_transaction(lambda c: c.execute(q.insert_log(values)), f"log line of job {job_id}")


def record_file(
    job_id: uuid.UUID,
    *,
    direction: Literal["in", "out"],
    uri: str,
    size: int | None = None,
    sha256: str | None = None,
    records: int | None = None,
    step_id: uuid.UUID | None = None,
) -> None:
    """Record a file a job read (``in``) or wrote (``out``)."""
    job_id = as_job_id(job_id)
    values = {
        "job_id": job_id,
        "step_id": step_id,
        "direction": direction,
        "uri": uri,
        "bytes": size,
        "sha256": sha256,
        "records": records,
    }
    in_transaction(lambda c: c.execute(q.insert_file(values)), f"file record of job {job_id}")


def job_for_task(task_id: str) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """The ``(job_id, step_id)`` a Celery message belongs to, if the ledger knows it."""

    def work(connection: Connection) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        row = connection.execute(q.job_id_for_task(task_id)).first()
        return None if row is None else (row[0], row[1])

    return in_transaction(work, f"lookup of task {task_id}")


# -- internals ---------------------------------------------------------------------------


def _transition(
    job_id: uuid.UUID,
    target: JobStatus,
    values: dict[str, Any],
    actor: Actor,
    message: str,
    *,
    execution_id: str | None = None,
    worker: str | None = None,
    guards: list[ColumnElement[bool]] | None = None,
) -> bool:
    def work(connection: Connection) -> bool:
        return move_and_record(
            connection,
            job_id,
            target,
            values,
            actor,
            message,
            execution_id,
            worker,
            guards=guards,
        )

    return in_transaction(work, f"job {job_id} {target}")


def move_and_record(
    connection: Connection,
    job_id: uuid.UUID,
    target: JobStatus,
    values: dict[str, Any],
    actor: Actor,
    message: str,
    execution_id: str | None = None,
    worker: str | None = None,
    allowed: set[JobStatus] | frozenset[JobStatus] | None = None,
    guards: list[ColumnElement[bool]] | None = None,
    step_id: uuid.UUID | None = None,
) -> bool:
    """The guarded move of a job (or, with ``step_id``, of one of its steps) and its
    event row, inside the caller's transaction. False when nothing moved."""
    table = q.jobs if step_id is None else q.steps
    guards = list(guards or [])
    if execution_id is not None:
        guards.append(table.c.execution_id == execution_id)
    moved = connection.execute(
        q.move(table, step_id or job_id, target, allowed or PREDECESSORS[target], values, *guards)
    ).first()
    if moved is None:
        return False
    row = event_row(
        job_id, S(moved.previous_status), target, actor, message, moved.attempts, step_id, worker
    )
    connection.execute(q.insert_events([row]))
    return True


def _database_now(connection: Connection) -> datetime:
    return _aware(connection.execute(select(func.now())).scalar_one())


def _aware(moment: datetime) -> datetime:
    if isinstance(moment, str):  # SQLite: CURRENT_TIMESTAMP is text
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def _quiet_since(moment: datetime | None) -> list[ColumnElement[bool]]:
    """Guard: no heartbeat (nor any update) since ``moment``."""
    if moment is None:
        return []
    heartbeat = func.coalesce(q.jobs.c.heartbeat_at, q.jobs.c.updated_at)
    return [heartbeat < moment]


def _cancel(
    connection: Connection,
    job_id: uuid.UUID,
    reason: str,
    actor: Actor,
    execution_id: str | None,
    worker: str | None,
    live_only: set[JobStatus] | None = None,
) -> bool:
    values = {"completed_at": func.now(), "failure_reason": reason}
    moved = move_and_record(
        connection, job_id, S.CANCELED, values, actor, reason, execution_id, worker, live_only
    )
    if moved:
        finish_steps(connection, job_id, S.CANCELED, reason, actor)
    return moved


def finish_steps(
    connection: Connection,
    job_id: uuid.UUID,
    target: JobStatus,
    reason: str,
    actor: Actor,
    after_position: int = 0,
) -> None:
    """Move every live step of ``job_id`` after ``after_position`` to ``target`` (the steps
    of a canceled job, or those that will never run after a step failed)."""
    values = {"completed_at": func.now(), "failure_reason": reason}
    moved = connection.execute(q.move_steps(job_id, target, LIVE, values, after_position)).all()
    if moved:
        connection.execute(
            q.insert_events(
                [
                    event_row(
                        job_id,
                        S(row.previous_status),
                        target,
                        actor,
                        reason,
                        row.attempts,
                        step_id=row.id,
                    )
                    for row in moved
                ]
            )
        )


def event_row(
    job_id: uuid.UUID,
    source: JobStatus | None,
    target: JobStatus,
    actor: Actor,
    message: str,
    attempt: int,
    step_id: uuid.UUID | None = None,
    worker: str | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "step_id": step_id,
        "from_status": None if source is None else source.value,
        "to_status": target.value,
        "message": message,
        "attempt": attempt,
        "worker": worker,
        "actor": actor,
    }


def as_document(result: Any) -> dict[str, Any] | None:
    """Results are stored as JSON objects; a bare value is wrapped as ``{"value": …}``."""
    if result is None or isinstance(result, dict):
        return result
    return {"value": result}
