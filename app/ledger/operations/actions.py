"""Operator actions: a ledger transition first, then the Celery message that goes with it.

Usage (the CLI and the HTTP API call these; ``actor`` says who asked)::

    from app.ledger.operations import actions as operations

    operations.cancel("20261124211536_2", actor="cli")   # queued: canceled now;
                                                          # running: stops at its checkpoint
    operations.retry(job_id, actor="api")                 # failed/canceled -> queued again

Why the ledger comes first:

- **cancel** is a durable intent (:func:`app.ledger.transitions.request_cancel`): a worker
  checks it when the job starts and at every checkpoint, so it holds even when no worker
  is online to hear a revoke. The revoke sent afterwards is only the fast path (a worker
  holding the message drops it at once). It never terminates by default: with prefork the
  process may already run another job by the time the signal lands (the signal goes to
  a pool process, not to a job); ``terminate=True`` is there for a body that never reaches a
  checkpoint, as a last resort.
- **retry** moves the job back to ``queued`` under a *new* Celery task id
  (:func:`~app.ledger.transitions.record_requeued`) before publishing: the old id may sit
  in the workers' revoked sets, and a late message of the old id is then stale and
  ignored. Same job id, attempts and history kept. Should the publish fail, the job is
  failed with that reason rather than left ``queued`` with no message.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.celery import app
from app.db import engine
from app.exceptions import JobNotFound, PayloadNotKept, TransitionRefused
from app.ledger import transitions as ledger
from app.ledger.reads.reports import resolve_job_id
from app.ledger.rules.redaction import MASK
from app.ledger.rules.states import JobStatus
from app.ledger.runtime.celery_redaction import payload_reprs
from app.ledger.runtime.target import JobTarget
from app.ledger.runtime.task import JobTask
from app.queues import broker_priority
from models.tables import jobs, steps

CANCELABLE = "queued, retrying or running"
RETRYABLE = "failed or canceled"


@dataclass(frozen=True)
class CancelResult:
    """What a cancel did: ``canceled`` (it will never run), ``requested`` (running: it
    stops at its next checkpoint) or ``already_requested``; ``revoked`` the task ids sent
    to the workers as the fast path."""

    job_id: uuid.UUID
    outcome: str
    revoked: tuple[str, ...]


@dataclass(frozen=True)
class RetryResult:
    """The job queued again and the id of its new Celery message."""

    job_id: uuid.UUID
    celery_task_id: str


def cancel(
    ref: str | uuid.UUID,
    *,
    actor: ledger.Actor,
    reason: str | None = None,
    terminate: bool = False,
) -> CancelResult:
    """Cancel a live job (and the live steps of a chain).

    Raises:
        InvalidJobId, JobNotFound: the reference designates no job.
        TransitionRefused: the job has finished already.
    """
    job_id = resolve_job_id(ref)
    try:
        outcome = ledger.request_cancel(
            job_id, actor=actor, reason=reason or f"canceled on request ({actor})"
        )
    except LookupError:
        raise JobNotFound(ref) from None
    if isinstance(outcome, JobStatus):
        raise TransitionRefused(job_id, outcome.value, "cancel", CANCELABLE)
    task_ids = _current_task_ids(job_id)
    if task_ids:
        app.control.revoke(list(task_ids), terminate=terminate)
    return CancelResult(job_id=job_id, outcome=outcome, revoked=task_ids)


def retry(ref: str | uuid.UUID, *, actor: ledger.Actor) -> RetryResult:
    """Queue a failed or canceled job again under a new Celery message.

    Raises:
        InvalidJobId, JobNotFound: the reference designates no job.
        TransitionRefused: the job is not failed/canceled, or is a chain (retry a chain
            by submitting a new run: its steps are published together by its producer).
    """
    job_id = resolve_job_id(ref)
    with engine().connect() as connection:
        job = connection.execute(
            select(jobs.c.type, jobs.c.status, jobs.c.payload, jobs.c.queue, jobs.c.priority).where(
                jobs.c.id == job_id
            )
        ).first()
        has_steps = connection.execute(
            select(steps.c.id).where(steps.c.job_id == job_id).limit(1)
        ).first()
    if job is None:
        raise JobNotFound(ref)
    if has_steps is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELED):
        raise TransitionRefused(
            job_id, job.status, "retry", f"{RETRYABLE} single-step (submit a new run of a chain)"
        )
    if MASK in json.dumps(job.payload or {}):
        raise PayloadNotKept(job_id)
    task_id = str(uuid.uuid4())
    if not ledger.record_requeued(job_id, celery_task_id=task_id, actor=actor):
        raise TransitionRefused(job_id, _status(job_id) or job.status, "retry", RETRYABLE)
    try:
        _publish(job.type, dict(job.payload or {}), job_id, task_id, job.queue, job.priority)
    except Exception as error:
        ledger.record_failed(
            job_id, reason=f"could not publish the retry to the broker: {error}", actor=actor
        )
        raise
    return RetryResult(job_id=job_id, celery_task_id=task_id)


def publish_existing(
    job_type: str,
    payload: dict[str, Any],
    job_id: uuid.UUID,
    task_id: str,
    queue: str | None = None,
    priority: int | None = None,
) -> None:
    """Publish a new message for a job the ledger already holds (manual retry, lifeline
    requeue): the ``jobledger`` header makes the worker use the existing row. The job's
    recorded queue and priority (0..9) are kept."""
    _publish(job_type, payload, job_id, task_id, queue, priority)


def _publish(
    job_type: str,
    payload: dict[str, Any],
    job_id: uuid.UUID,
    task_id: str,
    queue: str | None,
    priority: int | None,
) -> None:
    options: dict[str, Any] = {"headers": JobTarget(job_id).header()}
    if queue:
        options["queue"] = queue
    if priority is not None:  # a message with the header is published as is: map it here
        options["priority"] = broker_priority(priority)
    task = registered_task(job_type)
    if isinstance(task, JobTask):
        task.apply_async((), payload, task_id=task_id, **options)
    else:  # the type's module is not imported here: publish by name, routed by the app
        options.update(payload_reprs(app, (), payload, options))
        app.send_task(job_type, (), payload, task_id=task_id, **options)


def registered_task(job_type: str) -> Any:
    """The task object of a job type, importing the task modules if this process has not
    (the CLI does not load them until it needs one); None when no module defines it."""
    if job_type not in app.tasks:
        app.loader.import_default_modules()
    return app.tasks.get(job_type)


def _current_task_ids(job_id: uuid.UUID) -> tuple[str, ...]:
    """The Celery messages of a job and of all its steps (revoking a finished step's id
    costs a worker one entry in its revoked set; missing a live one would cost a run)."""
    with engine().connect() as connection:
        own = connection.execute(select(jobs.c.celery_task_id).where(jobs.c.id == job_id)).scalar()
        of_steps = connection.execute(
            select(steps.c.celery_task_id)
            .where(steps.c.job_id == job_id, steps.c.celery_task_id.is_not(None))
            .order_by(steps.c.position)
        ).scalars()
        ids = [own, *of_steps]
    return tuple(dict.fromkeys(str(i) for i in ids if i))


def _status(job_id: uuid.UUID) -> str | None:
    with engine().connect() as connection:
        status = connection.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar()
    return None if status is None else str(status)
