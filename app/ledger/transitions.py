"""One function per transition: the only way a job (or a step) changes.

Signals, the task base class, the CLI, the API, beat, the lifeline and the purge all call
these. Each is one transaction (or, on PostgreSQL's fast path, one statement) holding one
guarded ``UPDATE … WHERE status IN (PREDECESSORS[target])`` plus its event row(s). Zero
rows updated means the call was stale, duplicated or illegal (a late signal, a redelivery
of a finished job, a revoke racing a finish): nothing is written and the function says so
in its return value, so a job never moves backwards and never gets two events for one
transition.

Worker-side transitions carry an ``execution_id`` (one per start of the body): a late
signal of an earlier execution cannot finish, retry or cancel a newer one.

This module decides; it holds no SQL and never asks which database it runs on: every
statement is the current engine's (:func:`app.ledger.engines.current`). Texts and
documents are handed over raw: the engines sanitise every column they store
(:mod:`app.ledger.rules.sanitise`), so nothing here redacts or truncates.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection

from app.config import settings
from app.db import in_transaction
from app.exceptions import InvalidJobId
from app.ledger import engines
from app.ledger.engines.base import REDELIVERED as REDELIVERED
from app.ledger.engines.base import Engine, Ref, aware
from app.ledger.engines.base import Execution as Execution  # what a start records
from app.ledger.engines.base import MayStart as MayStart
from app.ledger.engines.base import NewJob as NewJob
from app.ledger.engines.base import NewStep as NewStep
from app.ledger.rules.actors import Actor as Actor
from app.ledger.rules.actors import Trigger as Trigger
from app.ledger.rules.sanitise import MAX_TEXT as MAX_TEXT  # the limit of a stored text
from app.ledger.rules.states import LIVE, PREDECESSORS, TERMINAL, JobStatus

S = JobStatus


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


def record_queued(
    job: NewJob, *, actor: Actor = "producer", steps: list[NewStep] | tuple[()] = ()
) -> bool:
    """Record a new job (and its steps) as ``queued`` with its creation event.

    The payload, subject and metadata are stored sanitised (secrets never enter the
    ledger); a manual retry of a job whose payload held secrets must therefore be
    submitted again by its producer.

    Returns False when a job with this id exists already (publishing an id twice is a
    no-op, so a retry or a redelivered publish never makes a second row), or when the
    job's tenant used its idempotency key already (:mod:`app.ledger.idempotency`), or
    when the job's firing ``(definition_id, scheduled_for)`` has its job already.
    """
    return engines.current().record_queued(job, actor=actor, steps=steps)


def record_queued_meanwhile(job: NewJob, *, actor: Actor, meanwhile: Callable[[], object]) -> bool:
    """:func:`record_queued` of a job without steps, with ``meanwhile()`` (which must not
    raise) run while the database commits it where the engine can (the PostgreSQL
    engine's non-blocking connection, :mod:`app.ledger.engines.overlapped`), else after
    it: ``delay()`` builds the job's message meanwhile, and sends it only once this
    returned."""
    return engines.current().record_queued_meanwhile(job, actor=actor, meanwhile=meanwhile)[0]


def record_queued_many(jobs: list[NewJob], *, actor: Actor = "producer") -> set[uuid.UUID]:
    """Record many new jobs ``queued`` in one transaction, whatever their number: the
    bulk enqueue path (on PostgreSQL one statement from arrays; elsewhere three: names,
    jobs, events). Returns the ids created
    (ids that existed already are skipped, as in :func:`record_queued`). A batch with
    idempotency keys is created whole or not at all: when another request holds any of
    its keys (two batches racing under one key), nothing is created and the set is empty."""
    if not jobs:
        return set()
    return engines.current().record_queued_many(jobs, actor=actor)


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
    queue: str | None = None,
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
    engine = engines.current()
    execution = Execution(
        celery_task_id=celery_task_id,
        execution_id=execution_id,
        worker=worker,
        worker_pid=worker_pid,
        queue=queue,
    )
    attempt = engine.start(job_id, execution, takeover=takeover)
    if attempt is not None:
        return Start(run=True, attempt=attempt)
    verdict = in_transaction(
        lambda c: _why_not_started(c, engine, job_id, execution, takeover=takeover),
        f"start of job {job_id}",
    )
    again = functools.partial(
        record_started,
        job_id,
        celery_task_id=celery_task_id,
        execution_id=execution_id,
        worker=worker,
        worker_pid=worker_pid,
        queue=queue,
    )
    if verdict.reason == "unknown" and unknown_job is not None:
        record_queued(unknown_job(), actor="worker")
        return again(is_alive=is_alive)
    # the retry asks again: another delivery may have taken over meanwhile, alive
    return resolve_holder(
        verdict, is_alive, lambda takeover: again(takeover=takeover, is_alive=is_alive)
    )


def may_start(job_id: uuid.UUID, execution: Execution) -> MayStart | None:
    """The lazy start's look (one read, nothing written): whether ``execution`` may start
    the job now without taking another execution over (the job is ``queued`` or
    ``retrying``, no cancel requested, the same or no message, lost executions under
    the limit), as which attempt, and the database clock now (its true start). None for
    anything else: the caller then starts the eager way (:func:`record_started`), which
    decides every other case (a cancel, a finished job, a holder, an unknown job…)."""
    return engines.current().may_start(as_job_id(job_id), execution)


def record_started_late(job_id: uuid.UUID, execution: Execution) -> int | None:
    """Write the start of an execution whose body began at ``execution.started_at``
    (the lazy start, after :func:`may_start` allowed it): ``running``, ``started_at``
    and the running event dated then. The attempt, or None when the job no longer
    lets this execution start (canceled or taken by another delivery meanwhile):
    nothing is written and the body's next checkpoint tells it to stop."""
    if execution.started_at is None:
        raise ValueError("a start written late needs its true start time")
    return engines.current().start(as_job_id(job_id), execution, takeover=None)


def record_started_finished(
    job_id: uuid.UUID,
    execution: Execution,
    *,
    source: JobStatus,
    result: Any,
    errors: list[dict[str, Any]] | None = None,
    result_url: str | None = None,
) -> JobStatus | None:
    """A quick job's start and outcome in one statement: ``source -> running`` at
    ``execution.started_at``, then ``running -> succeeded`` (``partial`` with item
    errors) now, as :func:`record_started_late` then :func:`record_finished` would.
    None when the job is no longer ``source`` or no longer lets this execution start
    (nothing is written)."""
    outcome = _started_finished(source, result, errors, result_url)
    moved = engines.current().start_and_finish(as_job_id(job_id), execution, **outcome)
    return outcome["target"] if moved else None


def started_finished_row(
    job_id: uuid.UUID,
    execution: Execution,
    *,
    source: JobStatus,
    result: Any,
    errors: list[dict[str, Any]] | None = None,
    result_url: str | None = None,
) -> tuple[JobStatus, tuple[Any, ...]] | None:
    """What :func:`record_started_finished` would write, checked and bound now, to be
    written with others by :func:`record_started_finished_many` (the worker's group
    commit): the status it moves to, and the row. None when the ledger's engine writes
    no batches (the caller writes it now)."""
    outcome = _started_finished(source, result, errors, result_url)
    row = engines.current().outcome_row(as_job_id(job_id), execution, **outcome)
    return None if row is None else (outcome["target"], row)


def writes_batches() -> bool:
    """Whether :func:`record_started_finished_many` can write (the ledger's engine)."""
    return engines.current().writes_batches


def record_started_finished_many(rows: list[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """:func:`record_started_finished` of many jobs in one transaction, each under its
    own guard (rows from :func:`started_finished_row`): the ``(job id, execution id)``
    of each job written; a job no longer ``source`` or no longer startable by its
    execution is left as it is."""
    return engines.current().start_and_finish_many(rows)


def _started_finished(
    source: JobStatus, result: Any, errors: list[dict[str, Any]] | None, result_url: str | None
) -> dict[str, Any]:
    errors = errors or []
    return {
        "source": source,
        "target": S.PARTIAL if errors else S.SUCCEEDED,
        "result": as_document(result),
        "errors": errors,
        "result_url": result_url,
        "message": _finished_message(errors),
    }


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
    engine = engines.current()
    since = engine.database_now(connection) - timedelta(seconds=settings().lifeline_timeout)
    return aware(heartbeat) >= since


def _why_not_started(
    connection: Connection,
    engine: Engine,
    job_id: uuid.UUID,
    execution: Execution,
    *,
    takeover: str | None,
) -> Start:
    """Why the start's statement moved nothing, and what follows from it."""
    state = engine.job_state(connection, job_id)
    if state is None:
        return Start(run=False, attempt=0, reason="unknown")
    status, worker = S(state.status), execution.worker
    if status is S.RUNNING and state.execution_id == execution.execution_id:
        return Start(run=True, attempt=state.attempts)  # the same start, reported twice
    if status in TERMINAL:
        return Start(run=False, attempt=state.attempts, reason=f"job is already {status}")
    if state.celery_task_id not in (None, execution.celery_task_id):
        return Start(
            run=False,
            attempt=state.attempts,
            reason=f"stale message {execution.celery_task_id}: "
            f"the job now runs as {state.celery_task_id}",
        )
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
        _cancel(connection, engine, Ref(job_id), reason=reason, actor="worker", worker=worker)
        return Start(run=False, attempt=state.attempts, reason=reason)
    lost = state.lost_executions + (1 if status is S.RUNNING else 0)
    if lost < settings().max_lost_executions:
        # The job changed between the start's statement and this look (a heartbeat that
        # went stale in between, another start): keep the message and look again later.
        return Start(
            run=False, attempt=state.attempts, defer=True, reason="the job changed meanwhile"
        )
    # Too many lost executions: fail the job rather than lose its worker once more.
    if status is S.RUNNING:
        engine.lose(
            connection,
            Ref(job_id),
            reason=REDELIVERED,
            actor="worker",
            worker=worker,
            execution_id=state.execution_id,
        )
    reason = lost_executions_reason(lost)
    errors = [{"type": "LostExecutions", "message": reason, "lost_executions": lost}]
    engine.fail(
        connection, Ref(job_id), reason=reason, errors=errors, actor="worker", worker=worker
    )
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
    started_at: datetime | None = None,
) -> bool:
    """The execution running on ``worker`` (its pool process ``worker_pid``, or execution
    ``execution_id``) died without an outcome and its message goes back to the queue:
    ``running -> retrying``, one more lost execution. Recorded by the worker's main
    process when a pool process dies, and by the lifeline when a whole worker is gone,
    before the message is delivered again, so the next delivery knows the execution is
    dead although its heartbeat is fresh. False when that execution is no longer the
    job's current one (nothing is written).

    ``started_at`` (the worker's main process, which knows when the pool process took
    the message) also covers an execution that died before its lazy start was written
    (:mod:`app.ledger.runtime.lazy_start`): a job still ``queued`` or ``retrying`` for
    message ``celery_task_id`` is then recorded ``-> running`` (at ``started_at``)
    ``-> retrying`` in the same transaction, one more attempt and one more lost
    execution, so a message that kills its process within the delay is still bounded by
    ``JOBLEDGER_MAX_LOST_EXECUTIONS``."""
    job_id = as_job_id(job_id)
    engine = engines.current()

    def work(connection: Connection) -> bool:
        if engine.lose(
            connection,
            Ref(job_id),
            reason=reason,
            actor=actor,
            worker=worker,
            on_worker=worker,
            worker_pid=worker_pid,
            execution_id=execution_id,
            celery_task_id=celery_task_id,
        ):
            return True
        if started_at is None or celery_task_id is None or execution_id is not None:
            return False
        unwritten = _unwritten(celery_task_id, worker, worker_pid, started_at)
        return engine.lose_before_start(connection, job_id, unwritten, reason=reason, actor=actor)

    return in_transaction(work, f"lost execution of job {job_id}")


def record_unwritten_start(
    job_id: uuid.UUID,
    *,
    celery_task_id: str,
    worker: str,
    worker_pid: int | None,
    started_at: datetime,
) -> bool:
    """The worker's main process, before it records the end of an execution it saw die
    (a hard time limit): a job still ``queued`` or ``retrying`` for message
    ``celery_task_id`` had its lazy start pending (its body never let the start be
    written); record it ``running`` from ``started_at``, so the outcome that follows is
    a valid walk from a start. False when the job is not waiting for that message."""
    job_id = as_job_id(job_id)
    engine = engines.current()
    unwritten = _unwritten(celery_task_id, worker, worker_pid, started_at)
    return in_transaction(
        lambda connection: engine.start_unwritten(connection, job_id, unwritten),
        f"start of job {job_id}",
    )


def _unwritten(
    celery_task_id: str, worker: str, worker_pid: int | None, started_at: datetime
) -> Execution:
    """The execution of a message whose start was never written (its lazy start was
    pending when its pool process ended): a new execution id, the worker's time."""
    return Execution(
        celery_task_id=celery_task_id,
        execution_id=str(uuid.uuid4()),
        worker=worker,
        worker_pid=worker_pid,
        started_at=started_at,
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
    errors = errors or []
    moved = engines.current().finish(
        job_id,
        execution_id=execution_id,
        target=target,
        result=as_document(result),
        errors=errors,
        result_url=result_url,
        message=_finished_message(errors),
    )
    return target if moved else None


def _finished_message(errors: list[dict[str, Any]]) -> str:
    return f"finished with {len(errors)} item errors" if errors else "finished"


def record_failed(
    job_id: uuid.UUID,
    *,
    reason: str,
    errors: list[dict[str, Any]] | None = None,
    actor: Actor = "worker",
    execution_id: str | None = None,
    worker: str | None = None,
    heartbeat_before: datetime | None = None,
    retries_exhausted: bool = False,
) -> bool:
    """Fail a live job with a user-safe ``reason`` and structured ``errors`` (both stored
    sanitised). ``retries_exhausted``: its retry policy has no attempt left, the job is
    dead (``jobs.retries_exhausted``, the ``dead_jobs`` view).

    ``heartbeat_before`` (the lifeline) fails it only if it has not shown a sign of life
    since then, so a job that reports progress while the lifeline looks is left alone.
    """
    job_id = as_job_id(job_id)
    engine = engines.current()

    def work(connection: Connection) -> bool:
        moved = engine.fail(
            connection,
            Ref(job_id),
            reason=reason,
            errors=errors,
            actor=actor,
            execution_id=execution_id,
            worker=worker,
            quiet_since=heartbeat_before,
            retries_exhausted=retries_exhausted,
        )
        if moved:  # a chained job: its steps will never run (or finish) now
            engine.finish_steps(
                connection, job_id, target=S.CANCELED, reason=f"not run: {reason}", actor=actor
            )
        return moved

    return in_transaction(work, f"job {job_id} failed")


def record_retrying(
    job_id: uuid.UUID, *, execution_id: str, reason: str, next_attempt_at: datetime | None = None
) -> bool:
    """The current execution ended and Celery will deliver the job again; with
    ``next_attempt_at``, the job's ``metadata.next_attempt_at`` says when (ISO 8601, UTC),
    written in the same transaction."""
    job_id = as_job_id(job_id)
    engine = engines.current()

    def work(connection: Connection) -> bool:
        if next_attempt_at is not None:
            when = next_attempt_at.astimezone(UTC).isoformat(timespec="milliseconds")
            engine.merge_metadata(
                connection, job_id, execution_id=execution_id, values={"next_attempt_at": when}
            )
        return engine.retrying(connection, Ref(job_id), execution_id=execution_id, reason=reason)

    return in_transaction(work, f"job {job_id} {S.RETRYING}")


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
    engine = engines.current()
    return in_transaction(
        lambda connection: _cancel(
            connection,
            engine,
            Ref(job_id),
            reason=reason,
            actor=actor,
            execution_id=execution_id,
            worker=worker,
        ),
        f"cancel of job {job_id}",
    )


def record_requeued(job_id: uuid.UUID, *, celery_task_id: str, actor: Actor) -> bool:
    """Manual retry: a ``failed`` or ``canceled`` job goes back to ``queued`` under a new
    Celery message; its id, attempts and history stay. Publish the message after this."""
    job_id = as_job_id(job_id)
    engine = engines.current()
    return in_transaction(
        lambda c: engine.requeue(c, job_id, celery_task_id=celery_task_id, actor=actor),
        f"job {job_id} {S.QUEUED}",
    )


def record_orphaned(
    job_id: uuid.UUID, *, celery_task_id: str, heartbeat_before: datetime, actor: Actor = "lifeline"
) -> bool:
    """A ``running`` job whose worker is gone (no heartbeat since ``heartbeat_before``)
    goes to ``retrying`` under a new Celery message, which the caller then publishes."""
    job_id = as_job_id(job_id)
    engine = engines.current()
    return in_transaction(
        lambda c: engine.orphan(
            c, job_id, celery_task_id=celery_task_id, quiet_since=heartbeat_before, actor=actor
        ),
        f"job {job_id} {S.RETRYING}",
    )


CancelOutcome = Literal["canceled", "requested", "already_requested"]

#: What an operator's cancel moves at once: a job no execution is running.
CANCEL_NOW_FROM = PREDECESSORS[S.CANCELED] - {S.RUNNING}


def request_cancel(job_id: uuid.UUID, *, actor: Actor, reason: str) -> CancelOutcome | JobStatus:
    """Operator cancel, durable in the ledger: a queued or retrying job is canceled now
    (a worker reaching its message later will not run it); a running job gets a cancel
    intent its next checkpoint acts on. Otherwise returns the job's (terminal) status.

    Raises:
        LookupError: no such job.
    """
    job_id = as_job_id(job_id)
    engine = engines.current()

    def work(connection: Connection) -> CancelOutcome | JobStatus:
        now = _cancel(
            connection, engine, Ref(job_id), reason=reason, actor=actor, only_from=CANCEL_NOW_FROM
        )
        if now:
            return "canceled"
        if engine.request_cancel(connection, job_id, reason=reason, actor=actor):
            return "requested"
        state = engine.job_state(connection, job_id)
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
    engine = engines.current()

    def work(connection: Connection) -> str | None:
        row = engine.checkpoint(
            connection, job_id, execution_id=execution_id, progress=progress, message=message
        )
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
    return engines.current().merge_metadata(
        connection, as_job_id(job_id), execution_id=execution_id, values=values
    )


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
    ref = Ref(as_job_id(job_id), step_id)
    engine = engines.current()
    in_transaction(
        lambda c: engine.append_log(c, ref, message=message, level=level),
        f"log line of job {ref.job_id}",
    )


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
    ref = Ref(as_job_id(job_id), step_id)
    engine = engines.current()
    in_transaction(
        lambda c: engine.record_file(
            c, ref, direction=direction, uri=uri, size=size, sha256=sha256, records=records
        ),
        f"file record of job {ref.job_id}",
    )


def job_for_task(task_id: str) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """The ``(job_id, step_id)`` a Celery message belongs to, if the ledger knows it."""
    engine = engines.current()
    return in_transaction(lambda c: engine.job_for_task(c, task_id), f"lookup of task {task_id}")


def as_document(result: Any) -> dict[str, Any] | None:
    """Results are stored as JSON objects; a bare value is wrapped as ``{"value": …}``."""
    if result is None or isinstance(result, dict):
        return result
    return {"value": result}


# -- internals ---------------------------------------------------------------------------


def _cancel(
    connection: Connection,
    engine: Engine,
    ref: Ref,
    *,
    reason: str,
    actor: Actor,
    execution_id: str | None = None,
    worker: str | None = None,
    only_from: frozenset[JobStatus] | None = None,
) -> bool:
    """Cancel a job and the steps of it that will never run now."""
    moved = engine.cancel(
        connection,
        ref,
        reason=reason,
        actor=actor,
        execution_id=execution_id,
        worker=worker,
        only_from=only_from,
    )
    if moved:
        engine.finish_steps(connection, ref.job_id, target=S.CANCELED, reason=reason, actor=actor)
    return moved
