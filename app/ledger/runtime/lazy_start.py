"""The lazy start: a short job's start and outcome written in one statement.

A plain job (not a chain step) used to cost its worker two ledger statements: ``running``
before the body, the outcome after it. Most jobs are short, so the start is now written
*later*:

1. At ``task_prerun`` one prepared read (no write, no commit) checks that the job may
   start exactly as the start statement would let it (``queued`` or ``retrying``, no
   cancel requested, the same or no message, lost executions under the limit) and takes
   the true start time from the database clock
   (:func:`app.ledger.transitions.may_start`). Anything else — a cancel, a finished or
   unknown job, another execution holding it — goes the eager way
   (:func:`app.ledger.transitions.record_started`), which decides those cases; so do
   chain steps, types declared ``lazy_start=False`` and jobs whose hard time limit is
   not above the delay (:meth:`~app.ledger.runtime.task.JobTask.start_execution`).
2. The start is then *pending* (:class:`PendingStart`). It is written as ``running``,
   dated at the true start (``started_at`` and the running event), when the first of
   these comes: ``JOBLEDGER_LAZY_START_SECONDS`` (default 0.2) have passed (one timer
   thread per process, :class:`_Timer`, which passes at most every :data:`TICK` seconds:
   a start is written at most that much after it is due); the body reports progress,
   checkpoints, logs a line, records a file or notes metadata; the execution moves
   otherwise (retrying, failed, canceled). Those writes all go through
   :class:`LazyJobTarget`.
3. A body that finishes first writes its start and its outcome in one statement
   (:func:`app.ledger.transitions.record_started_finished`: both events, each with its
   own time). A quick failure writes its start, then its failure (two statements).

The timer and the finish take the same lock, so exactly one of them writes the start.

What it costs: for up to the delay a job already running shows ``queued``. What stays:
a cancel made before the start still stops the body (a queued job is canceled at once,
so the late start, its checkpoint and its finish all find it canceled); a pool process
that dies before the start was written leaves the job ``queued`` (or ``retrying``), its
message is delivered again, and the worker's main process records the lost execution
(``-> running -> retrying``, :class:`~app.ledger.runtime.request.JobRequest`), so a
message that kills its process every time is still failed after
``JOBLEDGER_MAX_LOST_EXECUTIONS``; the lifeline leaves the job alone (its message is
reserved by the worker).

If the start can no longer be written when it is due (the job was canceled while the
ledger said ``queued``, another delivery took it), nothing about this execution is
written but a warning log line on the job; the body's next checkpoint tells it to stop,
and a finish records nothing (the job keeps the outcome it has, or gets the other
delivery's).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from enum import Enum
from typing import Any, Literal

from sqlalchemy import Connection

from app.exceptions import LedgerUnavailable
from app.ledger import transitions as ledger
from app.ledger.rules.states import JobStatus
from app.ledger.runtime import group_commit
from app.ledger.runtime.target import JobTarget, LogLevel

log = logging.getLogger(__name__)

#: Seconds between two passes of a process's timer at most (a start is written at most
#: this long after it is due).
TICK = 0.05


class _State(Enum):
    PENDING = "pending"
    WRITTEN = "written"  # running is in the ledger (or the finish wrote both)
    REFUSED = "refused"  # the ledger no longer lets this execution start
    ABANDONED = "abandoned"  # the message goes back unrecorded: write nothing more


class PendingStart:
    """The start of one execution, allowed by the read, not written yet."""

    def __init__(
        self,
        target: JobTarget,
        execution: ledger.Execution,
        allowed: ledger.MayStart,
        due: float,
    ) -> None:
        self.target = target
        self.execution = execution  # carries the true start (started_at)
        self.allowed = allowed
        #: ``time.monotonic()`` at which the timer writes the start.
        self.due = due
        self._state = _State.PENDING
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        """Whether the start is still unwritten (and may be written)."""
        return self._state is _State.PENDING

    def write(self) -> None:
        """Write the start now if it is still pending (the timer, a body write, another
        transition of the execution). A refusal is noted on the job; a ledger outage
        leaves it pending (the next write or the finish tries again)."""
        with self._lock:
            if self._state is not _State.PENDING:
                return
            if ledger.record_started_late(self.target.job_id, self.execution) is not None:
                self._state = _State.WRITTEN
                return
            self._state = _State.REFUSED
        self._note_unrecorded("its start could no longer be recorded")

    def abandon(self) -> None:
        """Never write the start (its message goes back to the queue unrecorded)."""
        with self._lock:
            if self._state is _State.PENDING:
                self._state = _State.ABANDONED

    def finish(
        self,
        result: Any,
        errors: list[dict[str, Any]] | None,
        result_url: str | None,
    ) -> JobStatus | Literal[False] | None:
        """The outcome, with the start when it is still pending (one statement): the
        status written, None when nothing could be (noted on the job), False when the
        start is not pending (the caller records the outcome the usual way)."""
        with self._lock:
            if self._state is not _State.PENDING:
                return False
            if group_commit.may_hand(self.execution.celery_task_id):
                handed = self._hand(result, errors, result_url)
                if handed is not None:
                    return handed
            try:
                status = ledger.record_started_finished(
                    self.target.job_id,
                    self.execution,
                    source=self.allowed.status,
                    result=result,
                    errors=errors,
                    result_url=result_url,
                )
            except LedgerUnavailable:
                self._state = _State.ABANDONED  # the message goes back: its redelivery runs
                raise
            self._state = _State.WRITTEN if status is not None else _State.REFUSED
        if status is None:
            self._note_unrecorded("it finished, but its start and result could not be recorded")
        return status

    def _hand(
        self, result: Any, errors: list[dict[str, Any]] | None, result_url: str | None
    ) -> JobStatus | None:
        """Hand the start and outcome to the worker's main process, which writes them
        with others (:mod:`app.ledger.runtime.group_commit`): the status they move to,
        None when the ledger's engine writes no batches."""
        held = ledger.started_finished_row(
            self.target.job_id,
            self.execution,
            source=self.allowed.status,
            result=result,
            errors=errors,
            result_url=result_url,
        )
        if held is None:
            return None
        status, row = held
        group_commit.hand(
            group_commit.HandedOutcome(
                str(self.target.job_id), self.execution.execution_id, status.value, row
            )
        )
        self._state = _State.WRITTEN  # the main process writes it, or the message goes back
        return status

    def _note_unrecorded(self, what: str) -> None:
        execution = self.execution
        group_commit.note_unrecorded(
            self.target.job_id,
            execution_id=execution.execution_id,
            worker=execution.worker,
            started_at=self.allowed.started_at,  # the execution's true start
            source=self.allowed.status,
            what=what,
        )


class LazyJobTarget(JobTarget):
    """A job whose start may be pending: every write of its execution writes the start
    first; its finish writes both at once while the start is pending."""

    def __init__(self, job_id: Any, pending: PendingStart) -> None:
        super().__init__(job_id)
        object.__setattr__(self, "pending", pending)

    pending: PendingStart

    # -- the body's writes -----------------------------------------------------------

    def log(self, message: str, *, level: LogLevel = "info") -> None:
        self.pending.write()
        super().log(message, level=level)

    def record_file(self, **kwargs: Any) -> None:
        self.pending.write()
        super().record_file(**kwargs)

    def checkpoint(
        self, *, execution_id: str, progress: int | None = None, message: str | None = None
    ) -> str | None:
        self.pending.write()
        return super().checkpoint(execution_id=execution_id, progress=progress, message=message)

    def note_metadata(
        self, connection: Connection, *, execution_id: str, values: dict[str, Any]
    ) -> bool:
        self.pending.write()
        return super().note_metadata(connection, execution_id=execution_id, values=values)

    # -- the execution's transitions -------------------------------------------------

    def finish(
        self,
        *,
        execution_id: str,
        result: Any,
        errors: list[dict[str, Any]] | None = None,
        result_url: str | None = None,
        worker: str | None = None,
    ) -> JobStatus | None:
        both = self.pending.finish(result, errors, result_url)
        if both is not False:
            return both
        return super().finish(
            execution_id=execution_id,
            result=result,
            errors=errors,
            result_url=result_url,
            worker=worker,
        )

    def fail(self, **kwargs: Any) -> bool:
        self.pending.write()
        return super().fail(**kwargs)

    def cancel(self, **kwargs: Any) -> bool:
        self.pending.write()
        return super().cancel(**kwargs)

    def retrying(self, **kwargs: Any) -> bool:
        self.pending.write()
        return super().retrying(**kwargs)

    def lost(self, **kwargs: Any) -> bool:
        self.pending.write()
        return super().lost(**kwargs)


def begin(
    target: JobTarget, execution: ledger.Execution, delay: float
) -> tuple[LazyJobTarget, int] | None:
    """Take the lazy start for ``execution`` of ``target`` when the read allows it: the
    target its execution writes through, and the attempt; None when the caller must
    start the eager way."""
    allowed = ledger.may_start(target.job_id, execution)
    if allowed is None:
        return None
    execution = ledger.Execution(
        celery_task_id=execution.celery_task_id,
        execution_id=execution.execution_id,
        worker=execution.worker,
        worker_pid=execution.worker_pid,
        queue=execution.queue,
        started_at=allowed.started_at,
    )
    pending = PendingStart(target, execution, allowed, time.monotonic() + delay)
    _timer().add(pending)
    return LazyJobTarget(target.job_id, pending), allowed.attempt


def settle(target: Any) -> None:
    """After the body's call: a start still pending (a body that ended without any
    outcome written, e.g. raising Celery's ``Ignore``) is written now, as it was before
    the lazy start."""
    if isinstance(target, LazyJobTarget) and target.pending.pending:
        try:
            target.pending.write()
        except LedgerUnavailable as error:
            log.warning("job %s: its start could not be written: %s", target.job_id, error)


def abandon(target: Any) -> None:
    """The message goes back to the queue unrecorded (the ledger is unreachable): a
    start still pending is never written (its redelivery starts the job)."""
    if isinstance(target, LazyJobTarget):
        target.pending.abandon()


class _Timer:
    """One thread per process that writes each pending start once it is due.

    Cheap for a stream of quick jobs: adding a start wakes the thread only when nothing
    else was waiting (it already sleeps until an earlier start is due), and the thread
    wakes at most every ``tick`` seconds, writing every start due by then (the finished
    ones are dropped). So a start is written between its delay and ``tick`` later, and
    the thread wakes a few times a second however many jobs pass, instead of once or
    twice per job.
    """

    def __init__(self, tick: float) -> None:
        self.pid = os.getpid()
        self.tick = tick
        self._due: list[tuple[float, int, PendingStart]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        thread = threading.Thread(target=self._run, name="jobledger-lazy-start", daemon=True)
        thread.start()

    def add(self, pending: PendingStart) -> None:
        with self._wake:
            idle = not self._due or pending.due < self._due[0][0]
            heapq.heappush(self._due, (pending.due, next(self._order), pending))
            if idle:
                self._wake.notify()

    def _run(self) -> None:
        last = 0.0
        while True:
            with self._wake:
                while True:
                    if not self._due:
                        self._wake.wait()
                        continue
                    wake_at = max(self._due[0][0], last + self.tick)
                    now = time.monotonic()
                    if wake_at <= now:
                        break
                    self._wake.wait(wake_at - now)
                last = now
                due = []
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due)[2])
            for pending in due:
                if pending.pending:
                    self._write(pending)

    @staticmethod
    def _write(pending: PendingStart) -> None:
        try:
            pending.write()
        except Exception:  # the body's next write or its finish tries again
            log.warning(
                "job %s: its pending start could not be written",
                pending.target.job_id,
                exc_info=True,
            )


_TIMER: _Timer | None = None
_TIMER_LOCK = threading.Lock()


def _timer(tick: float = TICK) -> _Timer:
    """This process's timer (a forked pool process starts its own)."""
    global _TIMER
    with _TIMER_LOCK:
        if _TIMER is None or _TIMER.pid != os.getpid():
            _TIMER = _Timer(tick)
        return _TIMER
