"""The worker's group commit, the main process's half: one thread writes the outcomes the
pool processes handed (:mod:`app.ledger.runtime.group_commit`), many per statement, and
then lets the event loop acknowledge their messages.

Usage (what :class:`~app.ledger.runtime.request.JobRequest` does with a handed outcome)::

    submit(outcome, written=ack_and_report, unwritten=put_back)

The writer takes every outcome handed since its last write (at most :data:`MAX_BATCH`),
writes them in one statement and one commit (each job under its own guard: a job
canceled or taken meanwhile is left as it is and noted, as a refused finish is), then
hands ``written`` of each to the worker's event loop (kombu's ``Hub.call_soon``, which
wakes the loop: a message is only ever acknowledged from the loop's thread). The writer
waits ``JOBLEDGER_GROUP_COMMIT_WAIT`` (0.02 s) for more after the first outcome of a
batch, and while one write is under way the next outcomes gather, so the batches grow
with the load (0 writes a lone outcome at once: measured, batches of 1.2 jobs cost the
main process more than the pool processes' own writes did).

If the ledger stays unreachable (the write's retries, ``JOBLEDGER_WRITE_RETRY_SECONDS``,
ran out), nothing was written: ``unwritten`` of each puts its message back in the queue,
unrecorded, as a pool process does when it cannot write (:class:`celery.exceptions.
Reject`); the job is still ``queued`` and its next delivery runs it. If the worker is
killed before the commit, the messages were never acknowledged and come back the same
way. A worker shutting down (``worker_shutting_down``) writes what waits at once, and its
main process waits for those writes before it exits (``worker_shutdown``, at most
:data:`DRAIN_SECONDS`). A worker without an event loop (a transport Celery polls)
writes each outcome at once, in the thread that received it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kombu.asynchronous import get_event_loop

from app import db
from app.config import settings
from app.ledger.runtime import group_commit
from app.ledger.runtime.group_commit import HandedOutcome

log = logging.getLogger(__name__)

#: Outcomes written by one statement at most.
MAX_BATCH = 500
#: Seconds between two looks at :attr:`_Writer.hurried` while the writer waits for more
#: outcomes (it is set from a signal handler, which must not take the writer's lock).
HURRY_CHECK = 0.1
#: Seconds a worker's shutdown waits for the outcomes still to be written.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class _Submitted:
    outcome: HandedOutcome
    written: Callable[[], None]
    unwritten: Callable[[], None]


def submit(
    outcome: HandedOutcome, *, written: Callable[[], None], unwritten: Callable[[], None]
) -> None:
    """Write ``outcome`` with the next batch, then call ``written`` on the event loop
    (``unwritten`` if it could not be written)."""
    hub = get_event_loop()
    submitted = _Submitted(outcome, written, unwritten)
    if hub is None:  # no event loop to come back to: write it here and now
        _Writer.write_batch([submitted], lambda callback: callback())
        return
    _writer(hub.call_soon).add(submitted)


class _Writer:
    """The thread of this process that writes handed outcomes."""

    def __init__(self, call_soon: Callable[[Callable[[], None]], object]) -> None:
        self.pid = os.getpid()
        self.call_soon = call_soon
        #: The worker is shutting down: write without waiting for more.
        self.hurried = False
        self._pending: list[_Submitted] = []
        self._unwritten = 0  # submitted, not yet through a write
        self._wake = threading.Condition()
        thread = threading.Thread(target=self._run, name="jobledger-outcome-writer", daemon=True)
        thread.start()

    def add(self, submitted: _Submitted) -> None:
        with self._wake:
            self._pending.append(submitted)
            self._unwritten += 1
            if len(self._pending) == 1 or len(self._pending) == MAX_BATCH:
                self._wake.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every outcome submitted so far went through a write (at most
        ``timeout`` seconds); whether they all did."""
        self.hurried = True
        with self._wake:
            self._wake.notify_all()
            return self._wake.wait_for(lambda: self._unwritten == 0, timeout)

    def _run(self) -> None:
        db.hold_hot_connection()  # one connection, kept between writes
        while True:
            batch = self._next_batch()
            self.write_batch(batch, self.call_soon)
            with self._wake:
                self._unwritten -= len(batch)
                self._wake.notify_all()

    def _next_batch(self) -> list[_Submitted]:
        with self._wake:
            while not self._pending:
                self._wake.wait()
            deadline = time.monotonic() + settings().group_commit_wait
            while len(self._pending) < MAX_BATCH and not self.hurried:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(left, HURRY_CHECK))
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            return batch

    @staticmethod
    def write_batch(
        batch: list[_Submitted], call_soon: Callable[[Callable[[], None]], object]
    ) -> None:
        try:
            group_commit.write([submitted.outcome for submitted in batch])
        except Exception:  # LedgerUnavailable, or anything else: nothing was written
            log.warning(
                "outcomes of %d jobs not recorded; their messages go back to the queue",
                len(batch),
                exc_info=True,
            )
            for submitted in batch:
                call_soon(submitted.unwritten)
            return
        for submitted in batch:
            call_soon(submitted.written)


def hurry(**_: object) -> None:
    """The worker is shutting down (``worker_shutting_down``, in its signal handler):
    outcomes are written without waiting for more."""
    if _WRITER is not None and _WRITER.pid == os.getpid():
        _WRITER.hurried = True


def drain(**_: object) -> None:
    """The worker stopped (``worker_shutdown``): wait, at most :data:`DRAIN_SECONDS`,
    until the outcomes handed before are written. Their messages are not acknowledged
    any more (the event loop has stopped): the broker delivers them again, and their
    next delivery finds the job finished and does not run it."""
    writer = _WRITER
    if writer is not None and writer.pid == os.getpid() and not writer.drain(DRAIN_SECONDS):
        log.warning("outcomes still unwritten after %s s of shutdown", DRAIN_SECONDS)


_WRITER: _Writer | None = None
_WRITER_LOCK = threading.Lock()


def _writer(call_soon: Callable[[Callable[[], None]], object]) -> _Writer:
    """This process's writer (started at its first outcome)."""
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None or _WRITER.pid != os.getpid():
            _WRITER = _Writer(call_soon)
        return _WRITER
