"""The lifeline: nothing stays ``running`` (or ``queued``) forever.

Usage::

    from app.ledger.operations import lifeline

    result = lifeline.run_once()            # what beat's ``lifeline`` job does every minute
    lifeline.run_once(timeout=30)           # a shorter timeout, e.g. from the CLI

One pass does two things:

1. **Orphaned running jobs.** A running job heartbeats (``jobs.heartbeat_at``) each time
   its body calls ``job.progress(…)`` or ``job.check_canceled()``. A job whose heartbeat is
   older than ``JOBLEDGER_LIFELINE_TIMEOUT`` seconds (default 300) has lost its worker
   (whole worker SIGKILLed, machine gone, a message that will only come back after the
   Redis visibility timeout). It is failed with the reason ``worker lost`` — or, when its
   task is marked safe to run again (``retry_when_orphaned = True`` on the task, e.g.
   ``@job_task("sync", …, retry_when_orphaned=True)``), moved to ``retrying`` under a new
   Celery message that is published at once. **Long tasks must therefore call
   ``progress``/``check_canceled`` more often than the timeout**; a body that computes
   silently for longer is failed as lost. With ``ping=True`` the pass also asks the
   workers who is alive (one broadcast, ~1 s) and treats the jobs of a worker that did
   not answer as orphaned after ``min(timeout, 30 s)`` without heartbeat. A chained job
   heartbeats through its running step; between two steps (no step running, the next
   step's message waiting in the broker behind other work) it is not orphaned.
2. **Queued jobs whose message is gone.** A job ``queued`` (or ``retrying``: waiting for
   its next delivery) unchanged for longer than the timeout, whose task id is neither
   waiting in its Redis queue nor reserved by a worker (the ``unacked`` hash), never
   reached the broker (a publish that failed after the row was written) or lost its
   message; it is failed with a reason that says so. Whether a message is in the
   broker is decided by :mod:`app.ledger.runtime.in_broker` (the bulk publish asks it
   too): on Redis its queue's lists and the ``unacked`` hash are read once per pass for
   all such jobs (O(queue length), only when a queued job is older than the timeout; a
   message published with a countdown/ETA sits in a worker's memory and the ``unacked``
   hash, so it is found); on RabbitMQ, which cannot be searched for one message without
   taking it, the message is gone only when its queue and every queue the workers
   consume hold no message at all and no live worker holds its task id (never fail on
   doubt: on a busy broker such a job is failed only once the queues drain). With any
   other broker this check is skipped.

3. **Reservations of dead workers** (Redis broker). A worker holds the messages it runs
   and those it prefetched in Redis's ``unacked`` hash until it acknowledges them; if the
   whole worker dies, kombu gives them back only after the visibility timeout (1 h).
   Each pass asks every live worker (one ``query_task`` broadcast,
   ``JOBLEDGER_WORKER_REPLY_TIMEOUT`` seconds) which of the messages reserved longer
   than ``JOBLEDGER_RESERVATION_GRACE`` seconds (60) it holds, and gives every other one
   back to its queue (:mod:`app.ledger.operations.reservations`, kombu's own atomic restore). A job
   still ``running`` on a worker that did not answer is first recorded as a lost
   execution (``running -> retrying``), so its next delivery runs at once. With beat's
   default interval (60 s), a dead worker's reservations are back in their queues within
   about two minutes of its death.

   **RabbitMQ** gives a consumer's unacknowledged messages back itself, the moment its
   connection closes (a killed worker's socket closes at once; a cut-off one is closed
   after the missed AMQP heartbeats, ``broker_heartbeat``, 120 s). The pass then only
   keeps the ledger honest: a job ``running`` past the timeout on a worker that does not
   answer and holds none of its message is recorded as a lost execution
   (``running -> retrying``) rather than failed, since its message waits in the queue
   and its next delivery runs it; a job whose message is really gone is then failed by
   (2) once it has waited ``retrying`` for the timeout.

Every change goes through :mod:`app.ledger.transitions` with a ``heartbeat_before`` guard:
a job that shows a sign of life between this pass's read and its write is left alone.
The events carry actor ``lifeline`` and say why.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from app import brokers
from app.celery import app
from app.config import settings
from app.db import engine
from app.ledger import transitions as ledger
from app.ledger.operations import reservations
from app.ledger.operations.actions import publish_existing, registered_task
from app.ledger.reads.reports import database_now, jsonable
from app.ledger.rules.states import LIVE, JobStatus
from app.ledger.runtime import in_broker, liveness
from app.ledger.runtime.target import JobTarget, target_of_message
from models.tables import jobs, steps

#: Longest silence tolerated from a job whose worker does not answer a ping.
GONE_WORKER_GRACE = 30.0


@dataclass
class LifelineResult:
    """The job ids one pass failed or re-queued."""

    timeout: float
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    queued_failed: list[str] = field(default_factory=list)
    #: Workers that did not answer the ping (``ping=True`` only).
    silent_workers: list[str] = field(default_factory=list)
    #: Task ids of the reserved messages no live worker held, given back to their queue.
    restored: list[str] = field(default_factory=list)
    #: Jobs whose running execution was on a gone worker, recorded as lost executions.
    lost: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready document (the lifeline job's ``result``)."""
        return jsonable(asdict(self))  # type: ignore[no-any-return]


def run_once(
    *,
    timeout: float | None = None,
    ping: bool = False,
    exclude_job_id: uuid.UUID | None = None,
) -> LifelineResult:
    """One pass over running and queued jobs (see the module docstring)."""
    seconds = float(settings().lifeline_timeout if timeout is None else timeout)
    result = LifelineResult(timeout=seconds)
    with engine().connect() as connection:
        now = database_now(connection)
    before = now - timedelta(seconds=seconds)
    alive: set[str] | None = None
    if ping:
        replies = app.control.ping(timeout=1.0) or []
        alive = {name for reply in replies for name in reply}
    _give_back_dead_reservations(result)
    stale = _stale_running(before, now, alive, exclude_job_id)
    requeued_by_broker = _requeued_by_rabbitmq(stale)
    for job in stale:
        if _next_step_waits_in_broker(job.id):
            continue  # a chain between two steps: its next step is queued behind others
        if job.id in requeued_by_broker and _record_requeued(job, before, seconds):
            result.lost.append(str(job.id))
            continue
        if alive is not None and job.worker and job.worker not in alive:
            result.silent_workers.append(job.worker)
        quiet_since = before if job.heartbeat < before else now - _grace(seconds)
        if _orphan(job, quiet_since):
            result.requeued.append(str(job.id))
        elif ledger.record_failed(
            job.id,
            reason=f"worker lost: no heartbeat from {job.worker or 'its worker'} since "
            f"{job.heartbeat:%Y-%m-%d %H:%M:%S} UTC (lifeline timeout {seconds:g} s)",
            actor="lifeline",
            heartbeat_before=quiet_since,
            errors=[{"type": "WorkerLost", "message": f"no heartbeat for over {seconds:g} s"}],
        ):
            result.failed.append(str(job.id))
    result.silent_workers = sorted(set(result.silent_workers))
    for waiting in in_broker.without_message(_stale_queued(before, exclude_job_id)):
        if ledger.record_failed(
            waiting.id,
            reason=f"its message {waiting.celery_task_id} is not in the broker (the publish "
            f"failed or the message was lost): waiting since "
            f"{waiting.updated_at:%Y-%m-%d %H:%M:%S} UTC; "
            "retry it with `jobledger retry`",
            actor="lifeline",
            heartbeat_before=before,
        ):
            result.queued_failed.append(str(waiting.id))
    return result


def _give_back_dead_reservations(result: LifelineResult) -> None:
    """Give back to their queues the messages reserved longer than the grace that no
    live worker holds; first record the jobs they were running as lost executions."""
    if not _redis_broker():
        return
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        old = reservations.reserved_before(channel, time.time() - settings().reservation_grace)
        if not old:
            return
        holdings = liveness.held_by_live_workers(r.task_id for r in old)
        orphans = [r for r in old if r.task_id not in holdings.task_ids]
        running = _running_jobs({_job_of(r) for r in orphans})
        for reservation in orphans:
            job = running.get(_job_of(reservation))
            if (
                job is not None
                and job.worker not in holdings.workers
                and job.celery_task_id == reservation.task_id
                and JobTarget(job.id).lost(
                    reason=f"worker lost: {job.worker} does not answer; its message goes "
                    "back to the queue",
                    worker=job.worker,
                    actor="lifeline",
                    execution_id=job.execution_id,
                    celery_task_id=reservation.task_id,
                )
            ):
                result.lost.append(str(job.id))
            reservations.give_back(channel, reservation.tag)
            result.restored.append(reservation.task_id)


def _requeued_by_rabbitmq(stale: list[_Stale]) -> set[uuid.UUID]:
    """The stale running jobs (not chains) whose message RabbitMQ has given back: no
    live worker holds their task id, so the connection that held it is closed."""
    candidates = {job.celery_task_id: job.id for job in stale if job.celery_task_id}
    if brokers.kind(str(app.conf.broker_url)) != "rabbitmq" or not candidates:
        return set()
    holdings = liveness.held_by_live_workers(candidates)
    return {job_id for task_id, job_id in candidates.items() if task_id not in holdings.task_ids}


def _record_requeued(job: _Stale, before: datetime, seconds: float) -> bool:
    """``running -> retrying`` for a job whose worker is gone and whose message waits in
    its queue again (RabbitMQ); False when the job showed a sign of life meanwhile."""
    if job.heartbeat >= before:
        return False  # its worker only did not answer: leave it to the timeout
    return JobTarget(job.id).lost(
        reason=f"worker lost: no heartbeat from {job.worker or 'its worker'} since "
        f"{job.heartbeat:%Y-%m-%d %H:%M:%S} UTC (lifeline timeout {seconds:g} s) and no "
        "live worker holds its message: RabbitMQ put it back in the queue when the "
        "worker's connection closed; its next delivery runs it",
        worker=job.worker or "",
        actor="lifeline",
        execution_id=job.execution_id,
        celery_task_id=job.celery_task_id,
    )


@dataclass(frozen=True)
class _Running:
    id: uuid.UUID
    worker: str
    execution_id: str | None
    celery_task_id: str | None


def _running_jobs(job_ids: set[uuid.UUID]) -> dict[uuid.UUID, _Running]:
    if not job_ids:
        return {}
    query = select(jobs.c.id, jobs.c.worker, jobs.c.execution_id, jobs.c.celery_task_id).where(
        jobs.c.id.in_(sorted(job_ids)),
        jobs.c.status == JobStatus.RUNNING.value,
        jobs.c.worker.is_not(None),
    )
    with engine().connect() as connection:
        rows = connection.execute(query).all()
    return {r.id: _Running(r.id, r.worker, r.execution_id, r.celery_task_id) for r in rows}


def _job_of(reservation: reservations.Reservation) -> uuid.UUID:
    """The job a reserved message belongs to (a step's message: its chained job)."""
    return target_of_message(reservation.headers, reservation.task_id).job_id


def _redis_broker() -> bool:
    return brokers.kind(str(app.conf.broker_url)) == "redis"


@dataclass(frozen=True)
class _Stale:
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    worker: str | None
    queue: str | None
    priority: int | None
    heartbeat: datetime
    execution_id: str | None = None
    celery_task_id: str | None = None


def _stale_running(
    before: datetime, now: datetime, alive: set[str] | None, exclude: uuid.UUID | None
) -> list[_Stale]:
    heartbeat = func.coalesce(jobs.c.heartbeat_at, jobs.c.updated_at)
    quiet = heartbeat < before
    if alive is not None:
        # The jobs of a worker that did not answer get a shorter grace.
        gone = jobs.c.worker.not_in(sorted(alive)) if alive else jobs.c.worker.is_not(None)
        quiet = or_(quiet, gone & (heartbeat < now - _grace((now - before).total_seconds())))
    query = select(
        jobs.c.id,
        jobs.c.type,
        jobs.c.payload,
        jobs.c.worker,
        jobs.c.queue,
        jobs.c.priority,
        heartbeat.label("heartbeat"),
        jobs.c.execution_id,
        jobs.c.celery_task_id,
    ).where(jobs.c.status == JobStatus.RUNNING.value, quiet)
    if exclude is not None:
        query = query.where(jobs.c.id != exclude)
    with engine().connect() as connection:
        rows = connection.execute(query).all()
    return [
        _Stale(
            r.id,
            r.type,
            dict(r.payload or {}),
            r.worker,
            r.queue,
            r.priority,
            _aware(r.heartbeat),
            r.execution_id,
            r.celery_task_id,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class _Queued:
    id: uuid.UUID
    celery_task_id: str | None
    queue: str | None
    updated_at: datetime


def _stale_queued(before: datetime, exclude: uuid.UUID | None) -> list[_Queued]:
    query = select(jobs.c.id, jobs.c.celery_task_id, jobs.c.queue, jobs.c.updated_at).where(
        jobs.c.status.in_([JobStatus.QUEUED.value, JobStatus.RETRYING.value]),
        jobs.c.updated_at < before,
    )
    if exclude is not None:
        query = query.where(jobs.c.id != exclude)
    with engine().connect() as connection:
        rows = connection.execute(query).all()
    return [_Queued(r.id, r.celery_task_id, r.queue, _aware(r.updated_at)) for r in rows]


def _next_step_waits_in_broker(job_id: uuid.UUID) -> bool:
    """Whether a running chained job is only between steps: no step runs and the next
    one's message waits in the broker (its parent heartbeats only while a step runs)."""
    with engine().connect() as connection:
        live = connection.execute(
            select(steps.c.status, steps.c.celery_task_id, jobs.c.queue)
            .join(jobs, jobs.c.id == steps.c.job_id)
            .where(
                steps.c.job_id == job_id,
                steps.c.status.in_([s.value for s in LIVE]),
            )
            .order_by(steps.c.position)
        ).all()
    if not live or any(row.status == JobStatus.RUNNING.value for row in live):
        return False
    return any(
        row.celery_task_id and in_broker.message_in_broker(row.celery_task_id, row.queue)
        for row in live
    )


def _orphan(job: _Stale, quiet_since: datetime) -> bool:
    """Re-queue a lost job whose task is safe to run again; False when it is not."""
    task = registered_task(job.type)
    if not getattr(task, "retry_when_orphaned", False):
        return False
    task_id = str(uuid.uuid4())
    if not ledger.record_orphaned(job.id, celery_task_id=task_id, heartbeat_before=quiet_since):
        return False
    publish_existing(job.type, job.payload, job.id, task_id, job.queue, job.priority)
    return True


def _grace(timeout: float) -> timedelta:
    return timedelta(seconds=min(timeout, GONE_WORKER_GRACE))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
