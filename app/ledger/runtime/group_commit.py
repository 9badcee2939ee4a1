"""The worker's group commit, the pool process's half: a quick job's outcome is handed to
the worker's main process instead of written by the pool process.

A quick plain job (its lazy start still pending when its body returns,
:mod:`app.ledger.runtime.lazy_start`) used to write its start and outcome from the pool
process, one statement and one commit per job. With ``JOBLEDGER_GROUP_COMMIT`` (the
default) a prefork pool process instead checks and binds that write
(:func:`app.ledger.transitions.started_finished_row`: a result that cannot be stored
fails the job here, as before) and hands it to the main process with the task's return
value; the main process writes the outcomes of every job that finished meanwhile in one
statement and one commit (:mod:`app.ledger.runtime.outcome_writer`), and only then
acknowledges their messages. Until then the job shows ``queued`` (as for any job inside
its lazy start), and its message is unacknowledged: a worker killed before the commit
leaves the job ``queued`` and its message is delivered again, as when a pool process dies
before a lazy start is written.

How it travels: Celery's prefork pool sends a task's outcome to the main process as
``(failed, repr of the return value, runtime)``. In each pool process, every job task's
tracer (Celery's ``__trace__``, built before ``worker_process_init``) is wrapped
(:func:`install`): a trace whose body handed an outcome returns a :class:`HandedOutcome`
(carrying the repr Celery made) in the repr's place, which the pool pickles to the main
process; :class:`~app.ledger.runtime.request.JobRequest` takes it from there. Only a
message this process traces through that wrapper may hand its outcome (:func:`may_hand`):
an eager ``apply()`` or another pool writes it itself, as does a trace that ends in an
error after its body handed (:func:`_traced`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.config import settings
from app.exceptions import LedgerUnavailable
from app.ledger import transitions as ledger
from app.ledger.runtime.target import JobTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HandedOutcome:
    """A quick job's start and outcome, bound (:func:`app.ledger.transitions.
    started_finished_row`) and not written yet."""

    job_id: str
    execution_id: str
    #: The status the write moves the job to (succeeded or partial).
    status: str
    row: tuple[Any, ...]
    #: Celery's repr of the body's return value (its ``task-succeeded`` event, its log).
    result_repr: str = ""


def note_unrecorded(
    job_id: uuid.UUID | str,
    *,
    execution_id: str,
    worker: str | None,
    started_at: datetime,
    source: str,
    what: str,
) -> None:
    """Note on the job that an execution's start (and outcome) could not be recorded
    because the ledger no longer lets it start (canceled or taken meanwhile)."""
    try:
        JobTarget(uuid.UUID(str(job_id))).log(
            f"execution {execution_id} on {worker} started at "
            f"{started_at:%Y-%m-%d %H:%M:%S.%f} UTC while the job was {source}; {what}: the "
            "job was canceled or taken by another delivery meanwhile",
            level="warning",
        )
    except LedgerUnavailable as error:
        log.warning("job %s: %s (%s)", job_id, what, error)


def write(outcomes: list[HandedOutcome]) -> None:
    """Write handed outcomes in one statement; a job whose guard refused its row gets
    the note a refused finish gets.

    Raises:
        LedgerUnavailable: nothing was written (the caller puts the messages back).
    """
    moved = ledger.record_started_finished_many([o.row for o in outcomes])
    for outcome in outcomes:
        if (outcome.job_id, outcome.execution_id) not in moved:
            _, execution_id, _, _, worker, _, _, _, _, _, started_at, _, _, source = outcome.row
            note_unrecorded(
                outcome.job_id,
                execution_id=execution_id,
                worker=worker,
                started_at=started_at,
                source=source,
                what="it finished, but its start and result could not be recorded",
            )


# -- in a pool process ---------------------------------------------------------------

#: The Celery task id of the message this process is tracing through :func:`_traced`.
_tracing: str | None = None
#: What the body of that message handed (at most one: a pool process runs one at a time).
_handed: HandedOutcome | None = None


def install(tasks: Iterable[Any], is_job_task: Callable[[Any], bool]) -> bool:
    """In a prefork pool process (``worker_process_init``): wrap the tracer of each job
    task so that its outcome may be handed. Whether it is on (``JOBLEDGER_GROUP_COMMIT``
    and a ledger engine that writes batches)."""
    if not settings().group_commit or not ledger.writes_batches():
        return False
    for task in tasks:
        trace = getattr(task, "__trace__", None)
        if trace is not None and is_job_task(task):
            task.__trace__ = _traced(trace)
    return True


def may_hand(celery_task_id: str) -> bool:
    """Whether the outcome of ``celery_task_id`` may be handed: this process traces that
    message through the wrapper (not an eager ``apply()``, not another pool)."""
    return _tracing is not None and _tracing == celery_task_id and _handed is None


def hand(outcome: HandedOutcome) -> None:
    """Hand the outcome of the message being traced to the main process."""
    global _handed
    _handed = outcome


def _traced(trace: Callable[..., Any]) -> Callable[..., Any]:
    def traced(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
        global _tracing, _handed
        _tracing, _handed = uuid, None
        try:
            traced_ok = trace(uuid, args, kwargs, request)
        finally:
            handed, _tracing, _handed = _handed, None, None
        if handed is None:
            return traced_ok
        if traced_ok.info is not None:  # failed after its body handed: write it here
            write([handed])
            return traced_ok
        # the pool sends (failed, this field, runtime) to the main process
        return traced_ok._replace(retstr=replace(handed, result_repr=traced_ok.retstr or ""))

    return traced
