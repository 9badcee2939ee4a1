"""Transitions of the steps of a chained job, and what they do to the parent.

A chained job (``sync_and_suggest``) is one ``jobs`` row with ordered ``job_steps``. The
parent is ``running`` while any step runs, ``succeeded`` (or ``partial``) when the last
step finishes, ``failed`` when a step fails, ``canceled`` when a step is canceled; steps
that will never run then become ``canceled`` with the reason (Celery never publishes
them, so no signal would tell).

Each function is one transaction that first locks the parent row: step N's finish and
step N+1's start can arrive out of order (CELERY_NOTES "Chains"), and the lock makes
their effects on the parent apply one at a time. Every step event carries its
``step_id``; parent events carry none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, func

from app.config import settings
from app.db import in_transaction
from app.ledger.engines import queries as q
from app.ledger.rules.states import LIVE, TERMINAL, JobStatus
from app.ledger.transitions import (
    REDELIVERED,
    Actor,
    Start,
    as_document,
    finish_steps,
    heartbeat_fresh,
    lost_executions_reason,
    move_and_record,
    record_start_events,
    resolve_holder,
    stop_reason,
)

S = JobStatus


def record_step_started(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    celery_task_id: str,
    execution_id: str,
    worker: str,
    worker_pid: int | None = None,
    is_alive: Callable[[str], bool] | None = None,
    takeover: str | None = None,
) -> Start:
    """Move a step to ``running`` (and its parent, on the first step), or say why not:
    the parent was canceled or finished, a cancel of it was requested, another execution
    of the step is alive (``defer``), or the step lost too many executions (it fails, and
    its parent). The rules for a step found ``running`` are those of
    :func:`~app.ledger.transitions.record_started`, with the parent's heartbeat (a
    chained job heartbeats through its running step)."""

    def work(connection: Connection) -> Start:
        parent = connection.execute(q.lock_job(job_id)).first()
        if parent is None:
            return Start(run=False, attempt=0, reason=f"no chained job {job_id} in the ledger")
        parent_status = S(parent.status)
        if parent.cancel_requested_at is not None and parent_status in LIVE:
            reason = "canceled before this step started (cancel requested)"
            _finish_parent(connection, job_id, S.CANCELED, reason, "worker", worker)
            finish_steps(connection, job_id, S.CANCELED, reason, "worker")
            return Start(run=False, attempt=0, reason=reason)
        if parent_status in TERMINAL:
            reason = f"the chained job is already {parent_status}"
            finish_steps(connection, job_id, S.CANCELED, reason, "worker")
            return Start(run=False, attempt=0, reason=reason)
        state = connection.execute(q.step_state(step_id)).first()
        if state is None:
            return Start(run=False, attempt=0, reason="step is unknown")
        status = S(state.status)
        if status is S.RUNNING and state.execution_id == execution_id:
            return Start(run=True, attempt=state.attempts)  # the same start, reported twice
        if status not in LIVE or state.celery_task_id != celery_task_id:
            return Start(run=False, attempt=state.attempts, reason=f"step is {status}")
        running = status is S.RUNNING
        if (
            running
            and state.execution_id != takeover
            and heartbeat_fresh(connection, parent.heartbeat)
        ):
            return Start(
                run=False,
                attempt=state.attempts,
                holder=state.worker or "unknown",
                holder_execution=state.execution_id,
            )
        lost = state.lost_executions + (1 if running else 0)
        if lost >= settings().max_lost_executions:
            if running:
                _step_lost(connection, job_id, step_id, REDELIVERED, "worker", worker)
            reason = lost_executions_reason(lost)
            errors = [{"type": "LostExecutions", "message": reason, "lost_executions": lost}]
            _fail_step(connection, job_id, step_id, state.position, reason, errors, None, "worker")
            return Start(run=False, attempt=state.attempts, reason=reason)
        moved = connection.execute(
            q.move(
                q.steps,
                step_id,
                S.RUNNING,
                {S.QUEUED, S.RETRYING, S.RUNNING},
                {
                    "attempts": q.steps.c.attempts + 1,
                    "execution_id": execution_id,
                    "worker": worker,
                    "worker_pid": worker_pid,
                    "lost_executions": q.steps.c.lost_executions + (1 if running else 0),
                    "started_at": func.coalesce(q.steps.c.started_at, func.now()),
                },
                q.steps.c.celery_task_id == celery_task_id,
                q.steps.c.execution_id.is_(None) | (q.steps.c.execution_id != execution_id),
            )
        ).first()
        if moved is None:
            return Start(run=False, attempt=state.attempts, reason=f"step is {status}")
        previous, attempt = S(moved.previous_status), moved.attempts
        record_start_events(connection, job_id, previous, attempt, worker, step_id)
        if parent_status is S.QUEUED:
            _move_parent(
                connection,
                job_id,
                S.RUNNING,
                {
                    "attempts": q.jobs.c.attempts + 1,
                    "worker": worker,
                    "started_at": func.coalesce(q.jobs.c.started_at, func.now()),
                    "heartbeat_at": func.now(),
                },
                "first step started",
                "worker",
                worker,
            )
        else:
            connection.execute(q.checkpoint(job_id, None, None, None))
        return Start(run=True, attempt=attempt)

    verdict = in_transaction(work, f"start of step {step_id}")
    return resolve_holder(
        verdict,
        is_alive,
        lambda execution: record_step_started(
            job_id,
            step_id,
            celery_task_id=celery_task_id,
            execution_id=execution_id,
            worker=worker,
            worker_pid=worker_pid,
            takeover=execution,
            is_alive=is_alive,  # another delivery may have taken over meanwhile, alive
        ),
    )


def record_step_lost(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    reason: str,
    worker: str,
    worker_pid: int | None = None,
    celery_task_id: str | None = None,
    actor: Actor = "worker",
) -> bool:
    """A step's execution on ``worker`` (pool process ``worker_pid``) died and its message
    goes back: ``running -> retrying``, one more lost execution (see
    :func:`~app.ledger.transitions.record_execution_lost`); the parent stays running."""
    guards = [q.steps.c.worker == worker]
    if worker_pid is not None:
        guards.append(q.steps.c.worker_pid == worker_pid)
    if celery_task_id is not None:
        guards.append(q.steps.c.celery_task_id == celery_task_id)

    def work(connection: Connection) -> bool:
        connection.execute(q.lock_job(job_id)).first()
        return _step_lost(connection, job_id, step_id, reason, actor, worker, guards)

    return in_transaction(work, f"lost execution of step {step_id}")


def _step_lost(
    connection: Connection,
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    message: str,
    actor: Actor,
    worker: str | None,
    guards: list[ColumnElement[bool]] | None = None,
) -> bool:
    values = {"lost_executions": q.steps.c.lost_executions + 1, "execution_id": None}
    return move_and_record(
        connection,
        job_id,
        S.RETRYING,
        values,
        actor,
        message,
        worker=worker,
        guards=[*(guards or []), q.steps.c.status == S.RUNNING.value],
        step_id=step_id,
    )


def record_step_finished(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    execution_id: str,
    result: Any,
    errors: list[dict[str, Any]] | None = None,
    result_url: str | None = None,
    worker: str | None = None,
) -> JobStatus | None:
    """Finish a step; the last one finishes the parent (``partial`` if any step was)."""
    errors = errors or []
    target = S.PARTIAL if errors else S.SUCCEEDED

    def work(connection: Connection) -> JobStatus | None:
        connection.execute(q.lock_job(job_id)).first()
        values: dict[str, Any] = {"result": as_document(result), "completed_at": func.now()}
        values["progress"] = 100
        if not _move_step(
            connection,
            job_id,
            step_id,
            target,
            values,
            execution_id,
            f"finished with {len(errors)} item errors" if errors else "finished",
            worker,
        ):
            return None
        summary = connection.execute(q.step_summary(job_id)).all()
        done = sum(1 for step in summary if step.status in (S.SUCCEEDED, S.PARTIAL))
        if done < len(summary):
            connection.execute(q.checkpoint(job_id, None, 100 * done // len(summary), None))
            return target
        partial = any(step.status == S.PARTIAL for step in summary)
        outcome = S.PARTIAL if partial else S.SUCCEEDED
        parent_values: dict[str, Any] = {
            "result": _results_by_step(summary),
            "errors": errors,
            "completed_at": func.now(),
            "result_url": result_url,
        }
        parent_values["progress"] = 100
        parent_values["failure_reason"] = None  # a cancel requested too late: not a failure
        _move_parent(
            connection, job_id, outcome, parent_values, "last step finished", "worker", worker
        )
        return target

    return in_transaction(work, f"step {step_id} finished")


def record_step_failed(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    reason: str,
    errors: list[dict[str, Any]] | None = None,
    execution_id: str | None = None,
    actor: Actor = "worker",
    worker: str | None = None,
) -> bool:
    """Fail a step, its parent (naming the step), and cancel the steps after it."""

    def work(connection: Connection) -> bool:
        connection.execute(q.lock_job(job_id)).first()
        state = connection.execute(q.step_state(step_id)).first()
        if state is None:
            return False
        return _fail_step(
            connection, job_id, step_id, state.position, reason, errors, execution_id, actor, worker
        )

    return in_transaction(work, f"step {step_id} failed")


def _fail_step(
    connection: Connection,
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    position: int,
    reason: str,
    errors: list[dict[str, Any]] | None,
    execution_id: str | None,
    actor: Actor,
    worker: str | None = None,
) -> bool:
    """Fail a step, its parent (naming the step), and cancel the steps after it."""
    values = {"failure_reason": reason, "completed_at": func.now()}
    if not _move_step(
        connection, job_id, step_id, S.FAILED, values, execution_id, reason, worker, actor
    ):
        return False
    label = f"step {position} failed: {reason}"
    _finish_parent(connection, job_id, S.FAILED, label, actor, worker, errors=errors or [])
    finish_steps(
        connection, job_id, S.CANCELED, f"not run: step {position} failed", actor, position
    )
    return True


def record_step_canceled(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    *,
    reason: str,
    actor: Actor = "worker",
    execution_id: str | None = None,
    worker: str | None = None,
) -> bool:
    """Cancel a step (revoked, or stopped at a checkpoint), its parent and the rest."""

    def work(connection: Connection) -> bool:
        connection.execute(q.lock_job(job_id)).first()
        values = {"failure_reason": reason, "completed_at": func.now()}
        moved = _move_step(
            connection, job_id, step_id, S.CANCELED, values, execution_id, reason, worker, actor
        )
        if moved:
            _finish_parent(connection, job_id, S.CANCELED, reason, actor, worker)
            finish_steps(connection, job_id, S.CANCELED, reason, actor)
        return moved

    return in_transaction(work, f"step {step_id} canceled")


def record_step_retrying(
    job_id: uuid.UUID, step_id: uuid.UUID, *, execution_id: str, reason: str
) -> bool:
    """The step's execution ended and Celery will deliver it again; the parent stays
    ``running``."""
    return in_transaction(
        lambda connection: _move_step(
            connection,
            job_id,
            step_id,
            S.RETRYING,
            {},
            execution_id,
            reason,
            None,
        ),
        f"step {step_id} retrying",
    )


def step_checkpoint(
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    execution_id: str,
    progress: int | None = None,
    message: str | None = None,
) -> str | None:
    """Heartbeat of a running step (and of its parent, whose progress is the share of the
    chain done). Why it should stop (see :func:`~app.ledger.transitions.checkpoint`): a
    cancel of the parent was requested, or this execution is no longer current."""

    def work(connection: Connection) -> str | None:
        step = connection.execute(q.step_checkpoint(step_id, execution_id, progress)).first()
        if step is None:
            return stop_reason(None)
        total = len(connection.execute(q.step_summary(job_id)).all())
        overall = None
        if progress is not None and total:
            overall = (100 * (step.position - 1) + progress) // total
        parent = connection.execute(q.checkpoint(job_id, None, overall, message)).first()
        return stop_reason(parent)

    return in_transaction(work, f"progress of step {step_id}")


def _move_step(
    connection: Connection,
    job_id: uuid.UUID,
    step_id: uuid.UUID,
    target: JobStatus,
    values: dict[str, Any],
    execution_id: str | None,
    message: str,
    worker: str | None,
    actor: Actor = "worker",
) -> bool:
    return move_and_record(
        connection, job_id, target, values, actor, message, execution_id, worker, step_id=step_id
    )


def _move_parent(
    connection: Connection,
    job_id: uuid.UUID,
    target: JobStatus,
    values: dict[str, Any],
    message: str,
    actor: Actor,
    worker: str | None,
) -> bool:
    return move_and_record(connection, job_id, target, values, actor, message, worker=worker)


def _finish_parent(
    connection: Connection,
    job_id: uuid.UUID,
    target: JobStatus,
    reason: str,
    actor: Actor,
    worker: str | None,
    errors: list[Any] | None = None,
) -> bool:
    values: dict[str, Any] = {"completed_at": func.now(), "failure_reason": reason}
    if errors is not None:
        values["errors"] = errors
    return _move_parent(connection, job_id, target, values, reason, actor, worker)


def _results_by_step(summary: Sequence[Any]) -> dict[str, Any]:
    """The parent's result: each step's result under its type (``type#position`` when a
    type occurs twice in the chain)."""
    types = [step.step_type for step in summary]
    return {
        (
            step.step_type
            if types.count(step.step_type) == 1
            else f"{step.step_type}#{step.position}"
        ): step.result
        for step in summary
    }
