"""The worker-side request of a job task: records a lost execution in the main process.

A pool process that dies mid-job (SIGKILL, the OOM killer) is seen only by the worker's
main process, in :meth:`celery.worker.request.Request.on_failure`. With
``task_acks_late`` + ``task_reject_on_worker_lost`` Celery then puts the message back at
once and fires no signal. Before it does, :class:`JobRequest` records the loss in the
ledger (``running -> retrying``, one more lost execution), naming the dead process
(``worker`` + ``worker_pid``): the next delivery then knows that execution is dead,
although its heartbeat still looks fresh, and the count bounds a message that kills
every process it runs in. A process that died before its job's lazy start was written
(:mod:`app.ledger.runtime.lazy_start`) left the job ``queued`` (or ``retrying``): the
loss is then recorded ``-> running -> retrying`` in one transaction, the start dated
when the pool process took the message (Celery's ``time_start``), so such a message
is bounded too.

A pool process killed at its hard time limit before its job's lazy start was written
(a body that held the GIL from its first moment) gets that start written here, before
Celery's ``task_failure`` records the failure (:mod:`app.ledger.runtime.signals`).

If the ledger cannot be written, the loss is left to the next delivery (which waits
until the dead execution's heartbeat is stale) and the message still goes back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.worker.state import task_ready

from app.exceptions import LedgerUnavailable
from app.ledger.runtime import outcome_writer
from app.ledger.runtime.celery_redaction import RedactingRequest
from app.ledger.runtime.group_commit import HandedOutcome

log = logging.getLogger(__name__)


class JobRequest(RedactingRequest):
    """Celery's request, redacted (:class:`~app.ledger.runtime.celery_redaction.RedactingRequest`),
    plus the ledger record of a pool process lost mid-job, plus the outcomes its pool
    process handed (the group commit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The worker runs a subclass Celery generates per task type, whose on_success
        # (the pool's callback) overrides any of ours: take the pool's callback here.
        self._on_success_of_celery: Any = getattr(self, "on_success")  # noqa: B009
        self.on_success = self._on_success_or_handed

    def _on_success_or_handed(self, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        """Celery's on_success, after the outcome the pool process handed, if it did,
        is written (:mod:`app.ledger.runtime.outcome_writer`): only then is the message
        acknowledged and ``task-succeeded`` sent, with the body's return value."""
        failed, retval, runtime = failed__retval__runtime
        if failed or not isinstance(retval, HandedOutcome):
            return self._on_success_of_celery(failed__retval__runtime, **kwargs)
        outcome_writer.submit(
            retval,
            written=lambda: self._on_success_of_celery(
                (failed, retval.result_repr, runtime), **kwargs
            ),
            unwritten=self._put_back,
        )
        return None

    def _put_back(self) -> None:
        """The handed outcome could not be written: the message goes back to the queue
        unrecorded, as Celery handles a pool process's ``Reject(requeue=True)``."""
        task_ready(self)
        self.reject(requeue=True)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        if self._goes_back_to_the_queue(exc_info.exception):
            self._record_lost(exc_info.exception)
        elif isinstance(_unwrapped(exc_info.exception), TimeLimitExceeded):
            self._record_unwritten_start()  # before task_failure records the failure
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )

    def _record_unwritten_start(self) -> None:
        """The pool process was killed at its hard time limit: if its job's lazy start
        was never written (a body that never let the timer thread run, e.g. stuck in C
        code holding the GIL), write it now, dated when the process took the message, so
        the failure that follows is ``running -> failed`` from a true start."""
        from app.ledger.runtime.target import target_of  # late: the worker imports tasks first

        if self.worker_pid is None:
            return
        try:
            target_of(self._context).unwritten_start(
                celery_task_id=self.id,
                worker=self.hostname,
                worker_pid=self.worker_pid,
                started_at=self._taken_at(),
            )
        except LedgerUnavailable as error:
            log.warning("start of timed-out task %s not recorded: %s", self.id, error)

    def _goes_back_to_the_queue(self, exception: Any) -> bool:
        """A lost pool process whose message Celery will requeue (not a revoke or
        terminate, which Celery handles as a cancel)."""
        exception = _unwrapped(exception)
        lost = isinstance(exception, WorkerLostError) or (
            isinstance(exception, SystemExit | KeyboardInterrupt)
            and not (self._already_cancelled or self._already_revoked)
        )
        return bool(lost and self.task.acks_late and self.task.reject_on_worker_lost)

    def _taken_at(self) -> datetime:
        """When the pool process took the message (Celery's ``time_start``, the wall
        clock of this host), else now."""
        taken = self.time_start
        return datetime.fromtimestamp(taken, UTC) if taken else datetime.now(UTC)

    def _record_lost(self, exception: Any) -> None:
        from app.ledger.runtime.target import target_of  # late: the worker imports tasks first

        exception = _unwrapped(exception)
        if self.worker_pid is None:
            return  # never reached a pool process: nothing ran
        target = target_of(self._context)  # main process: the child's execution is not here
        reason = (
            f"worker lost: its pool process {self.worker_pid} on {self.hostname} died "
            f"({exception}); delivering it again"
        )
        try:
            target.lost(
                reason=reason,
                worker=self.hostname,
                worker_pid=self.worker_pid,
                celery_task_id=self.id,
                started_at=self._taken_at(),
            )
        except LedgerUnavailable as error:
            log.warning("lost execution of job %s not recorded: %s", target.job_id, error)


def _unwrapped(exception: Any) -> Any:
    """The exception a pool reported (billiard wraps some with their traceback)."""
    return exception.exc if isinstance(exception, ExceptionWithTraceback) else exception
