"""Transitions of the steps of a chained job, and what they do to the parent.

A chained job (``sync_and_suggest``) is one ``jobs`` row with ordered ``job_steps``. The
parent is ``running`` while any step runs, ``succeeded`` (or ``partial``) when the last
step finishes, ``failed`` when a step fails, ``canceled`` when a step is canceled; steps
that will never run then become ``canceled`` with the reason (Celery never publishes
them, so no signal would tell).

Each function is one transaction that first locks the parent row: step N's finish and
step N+1's start can arrive out of order (a Celery chain publishes the next step from
the previous step's worker before that worker acks), and the lock makes
their effects on the parent apply one at a time. Every step event carries its
``step_id``; parent events carry none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from app.config import settings
from app.db import in_transaction
from app.ledger import engines
from app.ledger.engines.base import REDELIVERED, Engine, Execution, Ref
from app.ledger.rules.states import LIVE, TERMINAL, JobStatus
from app.ledger.transitions import (
    Actor,
    Start,
    as_document,
    heartbeat_fresh,
    lost_executions_reason,
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
    engine = engines.current()
    ref = Ref(job_id, step_id)
    execution = Execution(
        celery_task_id=celery_task_id,
        execution_id=execution_id,
        worker=worker,
        worker_pid=worker_pid,
    )

    def work(connection: Connection) -> Start:
        parent = engine.lock_job(connection, job_id)
        if parent is None:
            return Start(run=False, attempt=0, reason=f"no chained job {job_id} in the ledger")
        parent_status = S(parent.status)
        if parent.cancel_requested_at is not None and parent_status in LIVE:
            reason = "canceled before this step started (cancel requested)"
            _cancel_chain(connection, engine, job_id, reason=reason, actor="worker", worker=worker)
            return Start(run=False, attempt=0, reason=reason)
        if parent_status in TERMINAL:
            reason = f"the chained job is already {parent_status}"
            engine.finish_steps(
                connection, job_id, target=S.CANCELED, reason=reason, actor="worker"
            )
            return Start(run=False, attempt=0, reason=reason)
        state = engine.step_state(connection, step_id)
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
                engine.lose(connection, ref, reason=REDELIVERED, actor="worker", worker=worker)
            reason = lost_executions_reason(lost)
            errors = [{"type": "LostExecutions", "message": reason, "lost_executions": lost}]
            _fail_step(
                connection,
                engine,
                ref,
                position=state.position,
                reason=reason,
                errors=errors,
                actor="worker",
            )
            return Start(run=False, attempt=state.attempts, reason=reason)
        attempt = engine.start_step(connection, ref, execution, lost=running)
        if attempt is None:
            return Start(run=False, attempt=state.attempts, reason=f"step is {status}")
        if parent_status is S.QUEUED:
            engine.start_parent(connection, job_id, worker=worker)
        else:  # the parent's heartbeat
            engine.checkpoint(connection, job_id, execution_id=None)
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
    engine = engines.current()

    def work(connection: Connection) -> bool:
        engine.lock_job(connection, job_id)
        return engine.lose(
            connection,
            Ref(job_id, step_id),
            reason=reason,
            actor=actor,
            worker=worker,
            on_worker=worker,
            worker_pid=worker_pid,
            celery_task_id=celery_task_id,
        )

    return in_transaction(work, f"lost execution of step {step_id}")


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
    engine = engines.current()

    def work(connection: Connection) -> JobStatus | None:
        engine.lock_job(connection, job_id)
        if not engine.finish_step(
            connection,
            Ref(job_id, step_id),
            execution_id=execution_id,
            target=target,
            result=as_document(result),
            message=f"finished with {len(errors)} item errors" if errors else "finished",
            worker=worker,
        ):
            return None
        summary = engine.step_summary(connection, job_id)
        done = sum(1 for step in summary if step.status in (S.SUCCEEDED, S.PARTIAL))
        if done < len(summary):
            progress = 100 * done // len(summary)
            engine.checkpoint(connection, job_id, execution_id=None, progress=progress)
            return target
        partial = any(step.status == S.PARTIAL for step in summary)
        engine.complete_parent(
            connection,
            job_id,
            target=S.PARTIAL if partial else S.SUCCEEDED,
            result=_results_by_step(summary),
            errors=errors,
            result_url=result_url,
            worker=worker,
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
    engine = engines.current()

    def work(connection: Connection) -> bool:
        engine.lock_job(connection, job_id)
        state = engine.step_state(connection, step_id)
        if state is None:
            return False
        return _fail_step(
            connection,
            engine,
            Ref(job_id, step_id),
            position=state.position,
            reason=reason,
            errors=errors,
            execution_id=execution_id,
            actor=actor,
            worker=worker,
        )

    return in_transaction(work, f"step {step_id} failed")


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
    engine = engines.current()
    ref = Ref(job_id, step_id)

    def work(connection: Connection) -> bool:
        engine.lock_job(connection, job_id)
        moved = engine.cancel(
            connection, ref, reason=reason, actor=actor, execution_id=execution_id, worker=worker
        )
        if moved:
            _cancel_chain(connection, engine, job_id, reason=reason, actor=actor, worker=worker)
        return moved

    return in_transaction(work, f"step {step_id} canceled")


def record_step_retrying(
    job_id: uuid.UUID, step_id: uuid.UUID, *, execution_id: str, reason: str
) -> bool:
    """The step's execution ended and Celery will deliver it again; the parent stays
    ``running``."""
    engine = engines.current()
    return in_transaction(
        lambda c: engine.retrying(
            c, Ref(job_id, step_id), execution_id=execution_id, reason=reason
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
    engine = engines.current()

    def work(connection: Connection) -> str | None:
        position = engine.step_checkpoint(
            connection, step_id, execution_id=execution_id, progress=progress
        )
        if position is None:
            return stop_reason(None)
        total = len(engine.step_summary(connection, job_id))
        overall = None
        if progress is not None and total:
            overall = (100 * (position - 1) + progress) // total
        parent = engine.checkpoint(
            connection, job_id, execution_id=None, progress=overall, message=message
        )
        return stop_reason(parent)

    return in_transaction(work, f"progress of step {step_id}")


# -- internals ---------------------------------------------------------------------------


def _fail_step(
    connection: Connection,
    engine: Engine,
    ref: Ref,
    *,
    position: int,
    reason: str,
    errors: list[dict[str, Any]] | None,
    actor: Actor,
    execution_id: str | None = None,
    worker: str | None = None,
) -> bool:
    """Fail a step, its parent (naming the step, with the step's ``errors``), and cancel
    the steps after it."""
    if not engine.fail(
        connection, ref, reason=reason, actor=actor, execution_id=execution_id, worker=worker
    ):
        return False
    label = f"step {position} failed: {reason}"
    engine.fail(
        connection, Ref(ref.job_id), reason=label, errors=errors or [], actor=actor, worker=worker
    )
    engine.finish_steps(
        connection,
        ref.job_id,
        target=S.CANCELED,
        reason=f"not run: step {position} failed",
        actor=actor,
        after_position=position,
    )
    return True


def _cancel_chain(
    connection: Connection,
    engine: Engine,
    job_id: uuid.UUID,
    *,
    reason: str,
    actor: Actor,
    worker: str | None,
) -> None:
    """Cancel a chained job with ``reason`` (stored sanitised by the same writer as a
    step's), and every step of it still to run."""
    engine.cancel(connection, Ref(job_id), reason=reason, actor=actor, worker=worker)
    engine.finish_steps(connection, job_id, target=S.CANCELED, reason=reason, actor=actor)


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
