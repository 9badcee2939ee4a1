"""What a Celery message runs: a job, or one step of a chained job — one target type.

Usage::

    target = target_of(request)              # from the message's ``jobledger`` header
    start = target.start(celery_task_id=…, execution_id=…, worker=…)
    target.checkpoint(execution_id=…, progress=40)
    target.finish(execution_id=…, result={…})

Job or step is decided once, here, where the target is made: from the ledger header of a
message (:func:`target_of`, :func:`target_of_message`), or from a task id the ledger
knows (:func:`target_for_task`, for the main-process handlers that have only the id).
Everything after that — the start, the body's writes, its outcome, a retry, a revoke, a
lost pool process — calls the same operation on whichever target it holds. Each
operation is one call through the one door: :mod:`app.ledger.transitions` for a job,
:mod:`app.ledger.steps` for a step (which also moves the parent and the steps after it),
so the chain rules stay there and no caller branches on ``step_id``.

The header is written here too (:meth:`JobTarget.header`), so what a producer writes and
what a worker reads cannot drift apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection

from app.exceptions import InvalidLedgerHeader
from app.ledger import steps
from app.ledger import transitions as ledger
from app.ledger.rules.states import JobStatus

#: Message header carrying the ledger's identity of a job (``job_id``, ``step_id``).
HEADER = "jobledger"

LogLevel = Literal["debug", "info", "warning", "error"]


class _BodyWrites:
    """What a body writes beside its transitions, the same for a job and a step: on the
    job's row, marked with the step when there is one."""

    job_id: uuid.UUID
    step_id: uuid.UUID | None

    def log(self, message: str, *, level: LogLevel = "info") -> None:
        """Append a log line."""
        ledger.append_log(self.job_id, message, level=level, step_id=self.step_id)

    def record_file(
        self,
        *,
        direction: Literal["in", "out"],
        uri: str,
        size: int | None = None,
        sha256: str | None = None,
        records: int | None = None,
    ) -> None:
        """Record a file the body read (``in``) or wrote (``out``)."""
        ledger.record_file(
            self.job_id,
            direction=direction,
            uri=uri,
            size=size,
            sha256=sha256,
            records=records,
            step_id=self.step_id,
        )


@dataclass(frozen=True)
class JobTarget(_BodyWrites):
    """A job that runs as one message: its transitions are :mod:`app.ledger.transitions`'."""

    job_id: uuid.UUID
    #: Never a step (readable on either kind of target).
    step_id: None = field(default=None, init=False)

    def header(self) -> dict[str, Any]:
        """The ``jobledger`` header of this job's messages."""
        return {HEADER: {"job_id": str(self.job_id)}}

    def start(
        self,
        *,
        celery_task_id: str,
        execution_id: str,
        worker: str,
        worker_pid: int | None = None,
        is_alive: Callable[[str], bool] | None = None,
        unknown_job: Callable[[], ledger.NewJob] | None = None,
        queue: str | None = None,
    ) -> ledger.Start:
        """``running``, or why not (:func:`app.ledger.transitions.record_started`).
        ``unknown_job`` records a job the ledger never heard of (a producer without it);
        ``queue``, the queue this delivery came from, is recorded on the job."""
        return ledger.record_started(
            self.job_id,
            celery_task_id=celery_task_id,
            execution_id=execution_id,
            worker=worker,
            worker_pid=worker_pid,
            unknown_job=unknown_job,
            is_alive=is_alive,
            queue=queue,
        )

    def checkpoint(
        self, *, execution_id: str, progress: int | None = None, message: str | None = None
    ) -> str | None:
        """Heartbeat (and progress); why the execution should stop, or None."""
        return ledger.checkpoint(self.job_id, execution_id, progress, message)

    def finish(
        self,
        *,
        execution_id: str,
        result: Any,
        errors: list[dict[str, Any]] | None = None,
        result_url: str | None = None,
        worker: str | None = None,  # the job's row names its worker already
    ) -> JobStatus | None:
        """``succeeded`` (``partial`` with item errors); None when the execution is stale."""
        return ledger.record_finished(
            self.job_id,
            execution_id=execution_id,
            result=result,
            errors=errors,
            result_url=result_url,
        )

    def fail(
        self,
        *,
        reason: str,
        errors: list[dict[str, Any]] | None = None,
        execution_id: str | None = None,
        actor: ledger.Actor = "worker",
        worker: str | None = None,
        retries_exhausted: bool = False,
    ) -> bool:
        """``failed`` with a user-safe reason (a chained job's steps are canceled);
        ``retries_exhausted`` marks it dead (its retry policy has no attempt left)."""
        return ledger.record_failed(
            self.job_id,
            reason=reason,
            errors=errors,
            execution_id=execution_id,
            actor=actor,
            worker=worker,
            retries_exhausted=retries_exhausted,
        )

    def cancel(
        self,
        *,
        reason: str,
        actor: ledger.Actor = "worker",
        execution_id: str | None = None,
        worker: str | None = None,
    ) -> bool:
        """``canceled`` now (revoked, or stopped at a checkpoint)."""
        return ledger.record_canceled(
            self.job_id, reason=reason, actor=actor, execution_id=execution_id, worker=worker
        )

    def retrying(
        self, *, execution_id: str, reason: str, next_attempt_at: datetime | None = None
    ) -> bool:
        """``retrying``: this execution ended and Celery delivers the message again (at
        ``next_attempt_at``, noted in the job's ``metadata``)."""
        return ledger.record_retrying(
            self.job_id, execution_id=execution_id, reason=reason, next_attempt_at=next_attempt_at
        )

    def lost(
        self,
        *,
        reason: str,
        worker: str,
        worker_pid: int | None = None,
        celery_task_id: str | None = None,
        execution_id: str | None = None,
        actor: ledger.Actor = "worker",
        started_at: datetime | None = None,
    ) -> bool:
        """The execution on ``worker`` died and its message goes back: ``retrying``, one
        more lost execution (:func:`app.ledger.transitions.record_execution_lost`; with
        ``started_at``, also when it died before its lazy start was written)."""
        return ledger.record_execution_lost(
            self.job_id,
            reason=reason,
            worker=worker,
            worker_pid=worker_pid,
            celery_task_id=celery_task_id,
            execution_id=execution_id,
            actor=actor,
            started_at=started_at,
        )

    def unwritten_start(
        self, *, celery_task_id: str, worker: str, worker_pid: int | None, started_at: datetime
    ) -> bool:
        """An execution that ended before its lazy start was written: ``running`` from
        ``started_at`` if the job still waits for this message
        (:func:`app.ledger.transitions.record_unwritten_start`)."""
        return ledger.record_unwritten_start(
            self.job_id,
            celery_task_id=celery_task_id,
            worker=worker,
            worker_pid=worker_pid,
            started_at=started_at,
        )

    def note_metadata(
        self, connection: Connection, *, execution_id: str, values: dict[str, Any]
    ) -> bool:
        """Merge ``values`` into the job's metadata inside the caller's transaction, only
        while ``execution_id`` is the job's current execution."""
        return ledger.note_metadata(connection, self.job_id, execution_id, values)


@dataclass(frozen=True)
class StepTarget(_BodyWrites):
    """One step of a chained job: its transitions are :mod:`app.ledger.steps`', which
    move the parent job (and cancel the steps after a failed or canceled one)."""

    job_id: uuid.UUID
    step_id: uuid.UUID
    #: The step's place in its chain, as the producer wrote it (shown, never trusted).
    position: int | None = field(default=None, compare=False)

    def header(self) -> dict[str, Any]:
        """The ``jobledger`` header of this step's message."""
        identity: dict[str, Any] = {"job_id": str(self.job_id), "step_id": str(self.step_id)}
        if self.position is not None:
            identity["position"] = self.position
        return {HEADER: identity}

    def start(
        self,
        *,
        celery_task_id: str,
        execution_id: str,
        worker: str,
        worker_pid: int | None = None,
        is_alive: Callable[[str], bool] | None = None,
        unknown_job: Callable[[], ledger.NewJob] | None = None,  # a step is always known
        queue: str | None = None,  # the parent's queue stays the chain's
    ) -> ledger.Start:
        """``running`` (the parent too, on the first step), or why not
        (:func:`app.ledger.steps.record_step_started`). A step the ledger does not know
        is not run: its chain was recorded with all its steps, so there is no
        ``unknown_job`` to make."""
        return steps.record_step_started(
            self.job_id,
            self.step_id,
            celery_task_id=celery_task_id,
            execution_id=execution_id,
            worker=worker,
            worker_pid=worker_pid,
            is_alive=is_alive,
        )

    def checkpoint(
        self, *, execution_id: str, progress: int | None = None, message: str | None = None
    ) -> str | None:
        """Heartbeat of the step and its parent; why the execution should stop, or None."""
        return steps.step_checkpoint(self.job_id, self.step_id, execution_id, progress, message)

    def finish(
        self,
        *,
        execution_id: str,
        result: Any,
        errors: list[dict[str, Any]] | None = None,
        result_url: str | None = None,
        worker: str | None = None,
    ) -> JobStatus | None:
        """Finish the step; the last one finishes the parent."""
        return steps.record_step_finished(
            self.job_id,
            self.step_id,
            execution_id=execution_id,
            result=result,
            errors=errors,
            result_url=result_url,
            worker=worker,
        )

    def fail(
        self,
        *,
        reason: str,
        errors: list[dict[str, Any]] | None = None,
        execution_id: str | None = None,
        actor: ledger.Actor = "worker",
        worker: str | None = None,
        retries_exhausted: bool = False,  # a chain is not marked dead by its step (docs)
    ) -> bool:
        """Fail the step and its parent (naming the step); the steps after it are canceled."""
        return steps.record_step_failed(
            self.job_id,
            self.step_id,
            reason=reason,
            errors=errors,
            execution_id=execution_id,
            actor=actor,
            worker=worker,
        )

    def cancel(
        self,
        *,
        reason: str,
        actor: ledger.Actor = "worker",
        execution_id: str | None = None,
        worker: str | None = None,
    ) -> bool:
        """Cancel the step, its parent and the steps after it."""
        return steps.record_step_canceled(
            self.job_id,
            self.step_id,
            reason=reason,
            actor=actor,
            execution_id=execution_id,
            worker=worker,
        )

    def retrying(
        self, *, execution_id: str, reason: str, next_attempt_at: datetime | None = None
    ) -> bool:
        """``retrying`` for the step; the parent stays ``running`` (the event's message
        says when the next attempt is; the parent's metadata is not touched)."""
        return steps.record_step_retrying(
            self.job_id, self.step_id, execution_id=execution_id, reason=reason
        )

    def lost(
        self,
        *,
        reason: str,
        worker: str,
        worker_pid: int | None = None,
        celery_task_id: str | None = None,
        execution_id: str | None = None,
        actor: ledger.Actor = "worker",
        started_at: datetime | None = None,  # a step's start is written before its body
    ) -> bool:
        """The step's execution died and its message goes back (the parent stays
        running). :func:`app.ledger.steps.record_step_lost` guards by worker, pool
        process and task id only, so an ``execution_id`` guard is refused rather than
        dropped."""
        if execution_id is not None:
            raise ValueError("a step's lost execution cannot be guarded by execution_id")
        return steps.record_step_lost(
            self.job_id,
            self.step_id,
            reason=reason,
            worker=worker,
            worker_pid=worker_pid,
            celery_task_id=celery_task_id,
            actor=actor,
        )

    def unwritten_start(
        self, *, celery_task_id: str, worker: str, worker_pid: int | None, started_at: datetime
    ) -> bool:
        """Nothing: a step's start is written before its body, never lazily."""
        return False

    def note_metadata(
        self,
        connection: Connection,
        *,
        execution_id: str,  # the parent has no execution of its own
        values: dict[str, Any],
    ) -> bool:
        """Merge ``values`` into the parent job's metadata inside the caller's transaction
        (a step's execution is not the parent's, so no execution guard)."""
        return ledger.note_metadata(connection, self.job_id, None, values)


#: Whatever one Celery message runs.
Target = JobTarget | StepTarget


def target_for(
    job_id: uuid.UUID, step_id: uuid.UUID | None = None, *, position: int | None = None
) -> Target:
    """The target of a job, or of one of its steps: the one place that tells them apart."""
    if step_id is None:
        return JobTarget(job_id)
    return StepTarget(job_id, step_id, position)


def target_of(request: Any) -> Target:
    """The target of a Celery request (a task's ``request`` or a worker-side
    :class:`~celery.worker.request.Request`'s context): see :func:`target_of_message`.

    Celery turns each custom header into an attribute of the request, and keeps them in
    ``request.headers`` too; either is read.

    Raises:
        InvalidLedgerHeader: the header is there but names no valid job (or step).
    """
    identity = (getattr(request, "headers", None) or {}).get(HEADER) or getattr(
        request, HEADER, None
    )
    return target_of_message({HEADER: identity}, str(request.id))


def target_of_message(headers: Mapping[str, Any] | None, task_id: str) -> Target:
    """The target of a message from its headers and task id.

    A ``jobledger`` header names the job (``job_id``) and, for a chain step, the step
    (``step_id``). A message without one was published by a producer that does not use
    the ledger (``send_task``): it is a job whose id is the task id (a task id that is no
    UUID gets a stable one derived from it).

    Raises:
        InvalidLedgerHeader: the header is there but names no valid job (or step).
    """
    identity = (headers or {}).get(HEADER)
    if not identity:
        return JobTarget(uuid_of_task_id(task_id))
    if not isinstance(identity, Mapping):
        raise InvalidLedgerHeader(task_id, f"is not a mapping: {identity!r}")
    if not identity.get("job_id"):
        # a header without a job id names nothing: the message is its own job, as before
        return JobTarget(uuid_of_task_id(task_id))
    position = identity.get("position")
    return target_for(
        _header_uuid(identity, "job_id", task_id),
        None if identity.get("step_id") is None else _header_uuid(identity, "step_id", task_id),
        position=position if isinstance(position, int) else None,
    )


def target_for_task(task_id: str) -> Target | None:
    """The target the ledger recorded for a Celery task id, None if it knows none (for
    the main-process handlers, which get only the id)."""
    found = ledger.job_for_task(task_id)
    if found is None:
        return None
    job_id, step_id = found
    return target_for(job_id, step_id)


def _header_uuid(identity: Mapping[str, Any], name: str, task_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(identity[name]))
    except ValueError:
        raise InvalidLedgerHeader(task_id, f"{name} {identity[name]!r} is not a UUID") from None


def uuid_of_task_id(value: str) -> uuid.UUID:
    """The job id of a Celery task id: the id itself when it is a UUID, else a stable
    UUID derived from it."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"celery-task:{value}")
