"""What a running job sees: progress, log lines, item errors, files and cancel checks.

Usage, inside a job body::

    def run(job: JobContext, payload: ImportPayload) -> dict[str, int]:
        for number, batch in enumerate(batches, 1):
            job.check_canceled()                 # cooperative checkpoint
            ...
            job.progress(100 * number // total, f"batch {number} of {total}")
            job.log(f"batch {number}: {len(batch)} rows")

Progress writes are throttled (``JOBLEDGER_PROGRESS_INTERVAL``) and monotonic; each
write is also a heartbeat and a checkpoint, so a job that reports progress stops at its
next report once a cancel was requested. Long jobs must call one of them now and then:
the lifeline takes a job with no heartbeat for its worker being gone.

The same class records the execution's outcome (``finish``, ``fail``…) on its target
(:mod:`app.ledger.runtime.target`): the job, or the step of a chain it runs as.

**Time limits.** At its soft time limit (``JOBLEDGER_TIME_LIMITS``, ``apply_async(
soft_time_limit=…)``; :attr:`JobContext.soft_time_limit` says how many seconds) the body
gets :class:`SoftTimeLimit` (Celery's ``SoftTimeLimitExceeded``) wherever it is. Not
caught, the job ends ``failed`` ("timed out after N s (soft time limit …)"). Caught, the
body decides how the job ends, with its own words, before the hard limit kills it::

    try:
        for number, row in enumerate(rows):
            ...
            job.tick()
    except SoftTimeLimit:
        job.add_error(f"not processed: the soft time limit came first", first=number)
        return {"done": number}          # ends `partial`, what was done is kept
        # or: raise JobFailed(f"stopped at the soft time limit after {number} rows")

``job.tenant`` is the tenant the body reads and writes data for: the ``tenant`` of the
job's ledger row (for a chain step, of its parent job), read once when first asked. It
is never taken from the payload: the row is what the API or producer recorded, and a
payload that names another tenant is refused (:meth:`JobContext.tenant_of`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Connection

from app.config import settings
from app.db import in_transaction
from app.exceptions import JobCanceled, JobFailed
from app.ledger.engines import queries as q
from app.ledger.runtime.target import JobTarget, Target

#: What a job body catches to end cleanly at its soft time limit (see the module docstring).
SoftTimeLimit = SoftTimeLimitExceeded
#: Item errors kept in ``jobs.errors``; past this only the count grows.
MAX_ITEM_ERRORS = 1000
#: Seconds between two checkpoints of :meth:`JobContext.tick` (at most; half the
#: promised second, so a slow checkpoint write still keeps it).
TICK_SECONDS = 0.5


class JobContext:
    """The ledger, as seen from inside one execution of one job (or chain step)."""

    def __init__(
        self,
        target: Target | uuid.UUID,
        execution_id: str,
        attempt: int,
        worker: str | None = None,
        soft_time_limit: float | None = None,
    ) -> None:
        #: What this execution runs: a job, or a step of a chained job (a bare job id
        #: is a job).
        self.target: Target = JobTarget(target) if isinstance(target, uuid.UUID) else target
        self.execution_id = execution_id
        self.attempt = attempt
        self.worker = worker
        #: Seconds after its start at which this execution gets :class:`SoftTimeLimit`.
        self.soft_time_limit = soft_time_limit
        #: Structured item errors (``row``, ``field``, ``message``…); any ⇒ ``partial``.
        self.errors: list[dict[str, Any]] = []
        #: Where the job's output can be fetched, if it has one.
        self.result_url: str | None = None
        self._reported = -1
        self._reported_at = 0.0
        self._checked_at = time.monotonic()  # the start was a heartbeat
        self._tenant: str | None = None

    @property
    def job_id(self) -> uuid.UUID:
        """The job's id (for a chain step, its parent's)."""
        return self.target.job_id

    @property
    def step_id(self) -> uuid.UUID | None:
        """The step's id when this execution runs a step of a chained job."""
        return self.target.step_id

    # -- for job bodies ---------------------------------------------------------------

    @property
    def tenant(self) -> str:
        """The tenant of the job's ledger row: every domain read and write of the body
        is filtered by it."""
        if self._tenant is None:
            self._tenant = str(
                in_transaction(
                    lambda c: c.execute(q.job_tenant(self.job_id)).scalar_one(),
                    f"tenant of job {self.job_id}",
                )
            )
        return self._tenant

    def tenant_of(self, named: str | None) -> str:
        """:attr:`tenant`, after checking that a payload's ``tenant`` field (``named``)
        agrees with it. ``delay()`` and the API never let them differ; a message that
        does (published around the ledger) fails rather than act for the tenant its
        payload claims."""
        tenant = self.tenant
        if named is not None and named != tenant:
            raise JobFailed(
                f"field 'tenant': the payload names tenant {named!r} but the job belongs to "
                f"tenant {tenant!r}; a job reads and writes only its own tenant's data"
            )
        return tenant

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0 to 100). Lower values than already reported are ignored;
        writes are throttled, except 100. Stops the job if a cancel was requested."""
        value = max(0, min(100, int(percent)))
        if value <= self._reported and message is None:
            return
        now = time.monotonic()
        if value < 100 and now - self._reported_at < settings().progress_interval:
            return
        self._reported, self._reported_at = max(value, self._reported), now
        stop = self._checkpoint(value, message)
        if stop is not None:
            raise JobCanceled(stop)

    def tick(self) -> None:
        """A checkpoint (:meth:`check_canceled`) when the last one is at least
        :data:`TICK_SECONDS` old, else nothing: cheap enough to call for every row of a
        long loop, so that however slow or uneven its items are, the heartbeat moves
        and a cancel is seen within about a second."""
        if time.monotonic() - self._checked_at >= TICK_SECONDS:
            self.check_canceled()

    def check_canceled(self) -> None:
        """Checkpoint: heartbeat, and raise :class:`JobCanceled` if a cancel was requested
        (or the ledger no longer considers this execution current)."""
        stop = self._checkpoint(None, None)
        if stop is not None:
            raise JobCanceled(stop)

    def log(
        self, message: str, level: Literal["debug", "info", "warning", "error"] = "info"
    ) -> None:
        """Append a log line to the job (redacted; longer than 5000 characters is cut)."""
        self.target.log(message, level=level)

    def add_error(self, message: str, **where: Any) -> None:
        """Record an item error (e.g. ``row=12, field="amount"``); the job ends ``partial``."""
        if len(self.errors) < MAX_ITEM_ERRORS:
            self.errors.append({**where, "message": message})

    def record_file(
        self,
        direction: Literal["in", "out"],
        uri: str,
        *,
        size: int | None = None,
        sha256: str | None = None,
        records: int | None = None,
    ) -> None:
        """Record a file this job read (``in``) or wrote (``out``)."""
        self.target.record_file(
            direction=direction, uri=uri, size=size, sha256=sha256, records=records
        )

    def noting(self, **values: Any) -> Callable[[Connection], None]:
        """A write that merges ``values`` into the job's ``metadata``, for the caller to
        run inside its own transaction (see :func:`app.ledger.transitions.note_metadata`).
        Noted on the job, also when it runs as a step of a chain."""

        def note(connection: Connection) -> None:
            self.target.note_metadata(connection, execution_id=self.execution_id, values=values)

        return note

    # -- outcomes, for the task base class --------------------------------------------

    def finish(self, result: Any) -> None:
        """Record ``succeeded`` (or ``partial`` when item errors were added)."""
        self.target.finish(
            execution_id=self.execution_id,
            result=result,
            errors=self.errors,
            result_url=self.result_url,
            worker=self.worker,
        )

    def fail(
        self, reason: str, errors: list[dict[str, Any]], *, retries_exhausted: bool = False
    ) -> None:
        """Record ``failed`` with a user-safe reason (``retries_exhausted``: its retry
        policy retried it as often as it may; the job is dead)."""
        self.target.fail(
            reason=reason,
            errors=errors,
            execution_id=self.execution_id,
            worker=self.worker,
            retries_exhausted=retries_exhausted,
        )

    def retrying(self, reason: str, *, next_attempt_at: datetime | None = None) -> None:
        """Record ``retrying``: this execution ends and Celery delivers the job again
        (at ``next_attempt_at``, noted in the job's metadata)."""
        self.target.retrying(
            execution_id=self.execution_id, reason=reason, next_attempt_at=next_attempt_at
        )

    def cancel(self, reason: str) -> None:
        """Record ``canceled`` (stopped at a checkpoint)."""
        self.target.cancel(reason=reason, execution_id=self.execution_id, worker=self.worker)

    def _checkpoint(self, progress: int | None, message: str | None) -> str | None:
        self._checked_at = time.monotonic()
        return self.target.checkpoint(
            execution_id=self.execution_id, progress=progress, message=message
        )
