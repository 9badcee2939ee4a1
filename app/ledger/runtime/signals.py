"""Thin adapters from Celery signals onto the target of the message
(:mod:`app.ledger.runtime.target`: a job, or a step of a chained job).

Which process fires what (Celery's prefork pool): ``worker_process_init`` (a pool child's
connections and its group commit, :mod:`app.ledger.runtime.group_commit`),
``task_prerun`` and ``task_retry`` in the pool child; ``task_revoked`` and the
``task_failure`` of a lost worker or a hard time limit in the worker's main process.
Each handler translates Celery's arguments into one call on the target: the pool
child's handlers find it on the request's execution (:mod:`app.ledger.runtime.execution`),
the main process's resolve it again from the header or the task id (request attributes
set in the child never reach it). The transitions written around the body itself
(queued, finished, failed) live in :mod:`app.ledger.runtime.task`, which explains why.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import current_app, signals

from app import db
from app.exceptions import JobTypeSettingsMisconfigured
from app.ledger.runtime import group_commit, outcome_writer
from app.ledger.runtime.celery_redaction import redact_log_handlers
from app.ledger.runtime.execution import execution_of
from app.ledger.runtime.target import target_for_task, target_of
from app.ledger.runtime.task import JobTask, timed_out
from app.ledger.runtime.time_limit_types import check_time_limit_types

log = logging.getLogger(__name__)


def forget_inherited_connections(**_: Any) -> None:
    """A forked pool child must not reuse its parent's database connections; it keeps
    its own hot-path connection between jobs (:func:`app.db.hold_hot_connection`)."""
    db.forget_inherited_connections()
    db.hold_hot_connection()


def hand_outcomes_to_the_main_process(**_: Any) -> None:
    """In a prefork pool process: quick jobs' outcomes go to the main process, which
    writes them in batches (:mod:`app.ledger.runtime.group_commit`)."""
    group_commit.install(current_app.tasks.values(), lambda task: isinstance(task, JobTask))


def record_job_started(task: Any = None, **_: Any) -> None:
    """Start the execution before the body runs: ``running`` recorded now, or (a plain
    job that may start) pending, written lazily; or a durable cancel honoured
    (:meth:`JobTask.start_execution`)."""
    if isinstance(task, JobTask):
        task.start_execution()


def record_job_retrying(
    sender: Any = None, request: Any = None, reason: Any = None, **_: Any
) -> None:
    """Celery will deliver the job again (``self.retry``, ``autoretry_for``)."""
    execution = execution_of(request)
    if not isinstance(sender, JobTask) or execution is None:
        return
    execution.target.retrying(execution_id=execution.execution_id, reason=f"retry: {reason}")


def record_job_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: bool = False,
    signum: Any = None,
    expired: bool = False,
    **_: Any,
) -> None:
    """A revoked message (main process): the job, or the step and its chain, is canceled."""
    if not isinstance(sender, JobTask) or request is None:
        return
    if expired:
        reason = "expired before a worker ran it"
    elif terminated:
        reason = f"revoked and terminated (signal {signum})"
    else:
        reason = "revoked before it ran"
    target_of(request).cancel(
        reason=reason, actor="worker", worker=getattr(request, "hostname", None)
    )


def record_job_lost(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    """Failures only the main process sees: the pool child died or hit the hard limit.

    Failures raised by the body are recorded by :meth:`JobTask.__call__` in the child.
    """
    if not isinstance(sender, JobTask) or task_id is None:
        return
    if not isinstance(exception, WorkerLostError | TimeLimitExceeded):
        return
    target = target_for_task(task_id)
    if target is None:
        log.warning("no ledger job for lost task %s", task_id)
        return
    if isinstance(exception, TimeLimitExceeded):
        hard = exception.args[0] if exception.args else None
        reason = timed_out(hard if isinstance(hard, int | float) else None, "hard")
    else:
        reason = f"worker lost: {exception}"
    errors = [{"type": type(exception).__name__, "message": str(exception)}]
    target.fail(reason=reason, errors=errors)


def refuse_unknown_time_limit_types(sender: Any = None, **_: Any) -> None:
    """Stop a worker or beat at start whose ``JOBLEDGER_TIME_LIMITS`` (or another per-type
    setting) names a job type that does not exist. ``SystemExit``: Celery logs and
    ignores any ``Exception`` a signal handler raises, which would let the process run on
    the wrong limits."""
    try:
        check_time_limit_types(sender.app)
    except JobTypeSettingsMisconfigured as error:
        raise SystemExit(f"jobledger: {error}") from None


def connect() -> None:
    """Connect the handlers (strong references: they live as long as the process)."""
    signals.worker_process_init.connect(forget_inherited_connections, weak=False)
    signals.worker_process_init.connect(hand_outcomes_to_the_main_process, weak=False)
    signals.worker_shutting_down.connect(outcome_writer.hurry, weak=False)
    signals.worker_shutdown.connect(outcome_writer.drain, weak=False)
    signals.worker_init.connect(refuse_unknown_time_limit_types, weak=False)
    signals.beat_init.connect(refuse_unknown_time_limit_types, weak=False)
    signals.task_prerun.connect(record_job_started, weak=False)
    signals.task_retry.connect(record_job_retrying, weak=False)
    signals.task_revoked.connect(record_job_revoked, weak=False)
    signals.task_failure.connect(record_job_lost, weak=False)
    # worker and beat logs show the redacted payload, result and exception text
    signals.after_setup_logger.connect(redact_log_handlers, weak=False)
    signals.after_setup_task_logger.connect(redact_log_handlers, weak=False)


connect()
