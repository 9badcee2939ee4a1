"""The job status machine: one list of states and the edges between them.

::

    queued ──> running ──> succeeded | partial | failed | canceled
      │          │  ^
      │          v  │
      │        retrying        (Celery retry / redelivery; attempts += 1 on each start)
      └──> canceled
    failed | canceled ──(manual retry)──> queued

Every transition in :mod:`app.ledger.transitions` is a guarded ``UPDATE … WHERE status IN
(PREDECESSORS[target])``; this module is the single source of those sets (both engines
derive every guard from ``PREDECESSORS``, the PostgreSQL fast path formats its SQL text
from it), of the CHECK constraint in the schema, and of the mapping from other
job systems' status words. A new edge is one entry here.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Status of a job or of one of its steps."""

    #: Recorded at publish; waiting in the broker for a worker.
    QUEUED = "queued"
    #: A worker is executing the body (attempts counts the starts).
    RUNNING = "running"
    #: The last attempt ended and Celery will deliver the job again (retry, redelivery).
    RETRYING = "retrying"
    #: Finished; every item done.
    SUCCEEDED = "succeeded"
    #: Finished, but some items failed (see ``errors``).
    PARTIAL = "partial"
    #: Finished without a result; ``failure_reason`` says why.
    FAILED = "failed"
    #: Stopped on request (cancel, revoke) or never ran because an earlier step failed.
    CANCELED = "canceled"


S = JobStatus

TERMINAL: frozenset[JobStatus] = frozenset({S.SUCCEEDED, S.PARTIAL, S.FAILED, S.CANCELED})
LIVE: frozenset[JobStatus] = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})

#: For each target status, the statuses a job may move to it from.
#: ``running -> running`` is absent on purpose: a redelivered message of a job whose
#: previous execution was lost is recorded as ``running -> retrying -> running``.
PREDECESSORS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.FAILED, S.CANCELED}),  # manual retry
    S.RUNNING: frozenset({S.QUEUED, S.RETRYING}),
    S.RETRYING: frozenset({S.RUNNING}),
    S.SUCCEEDED: frozenset({S.RUNNING}),
    S.PARTIAL: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.QUEUED, S.RUNNING, S.RETRYING}),
    S.CANCELED: frozenset({S.QUEUED, S.RUNNING, S.RETRYING}),
}

#: The statuses a start finds a job (or step) in and runs it: those ``running`` may be
#: reached from, and ``running`` itself when the path back to it through ``retrying``
#: exists (a lost execution: recorded ``running -> retrying -> running``).
START_SOURCES: frozenset[JobStatus] = PREDECESSORS[S.RUNNING] | (
    frozenset(s for s in PREDECESSORS[S.RETRYING] if s is S.RUNNING)
    if S.RETRYING in PREDECESSORS[S.RUNNING]
    else frozenset()
)

#: Status words of other job systems (``DONE``, ``PARTIAL_SUCCESS``, ``Cancelled``…),
#: mapped onto this machine.
VOCABULARY: dict[str, JobStatus] = {
    "started": S.RUNNING,
    "processing": S.RUNNING,
    "running": S.RUNNING,
    "done": S.SUCCEEDED,
    "success": S.SUCCEEDED,
    "completed": S.SUCCEEDED,
    "succeeded": S.SUCCEEDED,
    "error": S.FAILED,
    "failed": S.FAILED,
    "failure": S.FAILED,
    "pending": S.QUEUED,
    "queued": S.QUEUED,
    "partial_success": S.PARTIAL,
    "partial": S.PARTIAL,
    "cancelled": S.CANCELED,
    "canceled": S.CANCELED,
    "retry": S.RETRYING,
    "retrying": S.RETRYING,
}


def can_move(source: JobStatus | None, target: JobStatus) -> bool:
    """Whether ``source -> target`` is an edge; ``None`` is creation, which always makes
    ``queued`` (a worker that meets a job without a row records it queued, then running)."""
    if source is None:
        return target is S.QUEUED
    return source in PREDECESSORS[target]


def is_valid_walk(statuses: list[tuple[JobStatus | None, JobStatus]]) -> bool:
    """Whether a history of ``(from, to)`` events is a connected walk of the machine."""
    current: JobStatus | None = None
    for index, (source, target) in enumerate(statuses):
        if index == 0 and source is not None:
            return False
        if source != current or not can_move(source, target):
            return False
        current = target
    return True


def normalize(word: str) -> JobStatus:
    """Map a status word of any other job system (``DONE``, ``Cancelled``…) onto :class:`JobStatus`.

    Raises:
        ValueError: the word is not a known status; the message lists the known ones.
    """
    key = word.strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return VOCABULARY[key]
    except KeyError:
        known = ", ".join(sorted(VOCABULARY))
        raise ValueError(f"unknown job status {word!r}; known: {known}") from None
