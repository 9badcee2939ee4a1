"""The one interface every ledger database implements, and the values that cross it.

An :class:`Engine` has one method per statement family the ledger needs (the way Oban's
``Engine`` behaviour has its Basic and Lite implementations): the transitions of a job
and of a chained job's step, the writes beside them (log lines, files, metadata), and
the few pieces maintenance and reads need that differ by database (the upsert, the UTC
second stamp, "seconds ago", the JSON merge, vacuum, the status counts).

:mod:`app.ledger.transitions` and :mod:`app.ledger.steps` (the door) decide what happens;
an engine only says how it is written. Every engine moves a row only along an edge of
:data:`~app.ledger.rules.states.PREDECESSORS` and writes one event per edge it moves;
every value it stores passes :mod:`app.ledger.rules.sanitise` on the way in, so callers
hand over raw texts and documents. The contract suite
(``tests/integration/test_engine_contract.py``) runs the same tests against each engine.

Methods that take a ``connection`` run inside the caller's transaction; the others
(:meth:`Engine.record_queued`, :meth:`Engine.may_start`, :meth:`Engine.start`,
:meth:`Engine.start_and_finish`, :meth:`Engine.finish`, the counts, vacuum) own their
round trips, so an engine can make the per-job ones one statement each (a quick job's
worker: one read, then :meth:`Engine.start_and_finish`).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, TypeVar

from sqlalchemy import ColumnElement, Connection

from app.ledger.rules.actors import Actor, Trigger
from app.ledger.rules.states import JobStatus

T = TypeVar("T")


@dataclass(frozen=True)
class NewJob:
    """What the ledger needs to record a job at publish."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    tenant: str = "default"
    subject: str | None = None
    trigger: Trigger = "producer"
    created_by: str | None = None
    celery_task_id: str | None = None
    queue: str | None = None
    #: 0 (least urgent) to 9 (most urgent), as the user gave it (not the broker's value).
    priority: int | None = None
    parent_job_id: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The producer's "this request, once" key (unique per tenant) and its request's digest.
    idempotency_key: str | None = None
    request_digest: str | None = None
    #: The definition the job was made from, its version, and for a scheduled run the
    #: firing it is: ``(definition_id, scheduled_for)`` is unique, so a second insert of
    #: the same firing inserts nothing (``record_queued`` returns False).
    definition_id: uuid.UUID | None = None
    definition_version: int | None = None
    scheduled_for: datetime | None = None


@dataclass(frozen=True)
class NewStep:
    """One ordered step of a chained job, recorded with its parent."""

    id: uuid.UUID
    position: int
    step_type: str
    celery_task_id: str


@dataclass(frozen=True)
class Ref:
    """The row a transition moves: a job, or (with ``step_id``) one step of a chained job.
    Events of a step carry both ids."""

    job_id: uuid.UUID
    step_id: uuid.UUID | None = None


@dataclass(frozen=True, kw_only=True)
class Execution:
    """Which execution a start records (one per start of the body)."""

    celery_task_id: str
    execution_id: str
    worker: str
    worker_pid: int | None = None
    #: The queue the delivery came from (None: keep the one recorded at ``queued``).
    queue: str | None = None
    #: When the body really started, for a start written after it (the worker's lazy
    #: start, :mod:`app.ledger.runtime.lazy_start`): ``started_at`` and the ``running``
    #: event's time. None: now.
    started_at: datetime | None = None


@dataclass(frozen=True)
class MayStart:
    """What the read of a lazy start found: the job, in status ``status``, may start as
    attempt ``attempt``, and the database clock said ``started_at`` at that moment."""

    status: JobStatus
    attempt: int
    started_at: datetime


#: Event message of a start that finds the job running: its previous execution was lost.
REDELIVERED = (
    "the previous execution ended without an outcome (worker lost or message delivered "
    "again); starting again"
)


def aware(moment: datetime | str) -> datetime:
    """A timestamp read from the ledger as an aware UTC datetime (SQLite reads back text
    without a zone; both mean UTC)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Engine(ABC):
    """How one database stores the ledger's transitions (see the module docstring)."""

    #: The SQLAlchemy dialect name this engine serves.
    dialect: ClassVar[str]

    # -- what differs by database --------------------------------------------------------

    @abstractmethod
    def insert(self, table: Any) -> Any:
        """The INSERT of ``table`` that has ``on_conflict_do_nothing / _update``."""

    @abstractmethod
    def second_stamp(self) -> ColumnElement[str]:
        """``YYYYMMDDhhmmss`` of the database clock in UTC (run names)."""

    @abstractmethod
    def seconds_ago(self, seconds: float) -> ColumnElement[Any]:
        """The database clock ``seconds`` ago, comparable with the timestamp columns."""

    @abstractmethod
    def json_merge(self, column: Any, document: dict[str, Any]) -> ColumnElement[Any]:
        """``column`` (a JSON document) with the top-level keys of ``document`` replaced
        (``document`` is stored as given: sanitise it first)."""

    @abstractmethod
    def time_bucket(self, column: Any, unit: Literal["minute", "hour"]) -> ColumnElement[Any]:
        """``column`` truncated to the UTC ``unit`` (a timestamp; text on SQLite, which
        :func:`aware` reads)."""

    @abstractmethod
    def seconds_between(self, later: Any, earlier: Any) -> ColumnElement[float]:
        """``later - earlier`` in seconds, as a float (durations of the trend rollups)."""

    @abstractmethod
    def duration_bucket(self, seconds: ColumnElement[float]) -> ColumnElement[int]:
        """The histogram bucket of a duration, exactly as
        :func:`app.ledger.rules.durations.duration_bucket` computes it."""

    @abstractmethod
    def database_now(self, connection: Connection) -> datetime:
        """The database clock (UTC, aware)."""

    @abstractmethod
    def consistent_read(self) -> AbstractContextManager[Connection]:
        """A connection in one read transaction whose statements all see one state of the
        database (a snapshot of a whole budget must not be half before, half after a
        concurrent write)."""

    @abstractmethod
    def vacuum(self, tables: Sequence[str]) -> list[str]:
        """Reclaim the space of deleted rows of ``tables`` now; the tables vacuumed (none
        where the database needs no such step)."""

    @abstractmethod
    def settle_counts(self, margin: timedelta) -> int:
        """Count the jobs finished up to ``now() - margin`` into the settled status counts
        (:mod:`app.ledger.reads.counts`); how many. 0 where counts are read directly."""

    @abstractmethod
    def rebuild_counts(self, margin: timedelta) -> int:
        """Forget the settled counts and settle again from the whole ``jobs`` table."""

    @abstractmethod
    def status_counts(self, *, tenant: str | None, since: datetime | None) -> list[Any]:
        """``(type, status, jobs)`` rows of the jobs of ``tenant`` created since ``since``."""

    @abstractmethod
    def status_counts_per_tenant(self) -> list[Any]:
        """``(tenant, type, status, jobs)`` rows of every job the ledger holds (the
        operator's ``/metrics``)."""

    # -- publish, start, finish: their own round trips --------------------------------

    @abstractmethod
    def record_queued(self, job: NewJob, *, actor: Actor, steps: Sequence[NewStep]) -> bool:
        """Insert a job (and its steps) ``queued`` with its creation event(s); False when
        its id, or its tenant's idempotency key, exists already."""

    def record_queued_meanwhile(
        self, job: NewJob, *, actor: Actor, meanwhile: Callable[[], T]
    ) -> tuple[bool, T]:
        """:meth:`record_queued` of a job without steps, and ``meanwhile()`` run while
        the database commits it where the engine can (after it, here). ``meanwhile``
        must not raise."""
        return self.record_queued(job, actor=actor, steps=()), meanwhile()

    @abstractmethod
    def record_queued_many(self, jobs: Sequence[NewJob], *, actor: Actor) -> set[uuid.UUID]:
        """Insert many jobs ``queued`` with their events; the ids created. Jobs with
        idempotency keys are created all or none: when any key is taken, none."""

    @abstractmethod
    def start(self, job_id: uuid.UUID, execution: Execution, *, takeover: str | None) -> int | None:
        """Move a job to ``running`` for ``execution`` (attempts + 1) from a status of
        ``START_SOURCES``, and write its events (two when it was ``running``: a lost
        execution, recorded ``running -> retrying -> running``). The attempt, or None when
        nothing moved. A running job is taken over only when its heartbeat is older than
        the lifeline timeout or its execution is ``takeover``; never once its lost
        executions would reach the limit, nor with a cancel requested, a stale message or
        the same execution."""

    @abstractmethod
    def may_start(self, job_id: uuid.UUID, execution: Execution) -> MayStart | None:
        """Read (write nothing) whether :meth:`start` would move the job for
        ``execution`` without taking another execution over: the job is in a status
        ``running`` is reached from (not ``running`` itself), with no cancel requested,
        the same or no message, another execution, and lost executions under the limit.
        None otherwise (the caller then starts the eager way, which says why)."""

    @abstractmethod
    def start_and_finish(
        self,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        source: JobStatus,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> bool:
        """A start not written yet and the outcome together, in one transaction:
        ``source -> running`` at ``execution.started_at`` then ``running -> target``
        (succeeded or partial) now, under the guard of :meth:`may_start` and only while
        the job is still ``source`` (what :meth:`may_start` found). False when that no
        longer holds (nothing is written)."""

    #: Whether :meth:`start_and_finish_many` writes (the worker's group commit).
    writes_batches: ClassVar[bool] = False

    def outcome_row(
        self,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        source: JobStatus,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> tuple[Any, ...] | None:
        """What :meth:`start_and_finish` would write, bound and checked now (a value
        it cannot store raises here), to be written later with others by
        :meth:`start_and_finish_many`; None when this engine writes no batches."""
        return None

    def start_and_finish_many(self, rows: Sequence[tuple[Any, ...]]) -> set[tuple[str, str]]:
        """:meth:`start_and_finish` of each of ``rows`` (from :meth:`outcome_row`), in
        one transaction, each under its own guard; the ``(job id, execution id)`` of
        each job moved (a row refused writes nothing)."""
        raise NotImplementedError(f"{type(self).__name__} writes no outcomes in batches")

    @abstractmethod
    def finish(
        self,
        job_id: uuid.UUID,
        *,
        execution_id: str,
        target: JobStatus,
        result: dict[str, Any] | None,
        errors: list[dict[str, Any]],
        result_url: str | None,
        message: str,
    ) -> bool:
        """Move the job's current execution to ``target`` (succeeded or partial) with its
        outcome (progress 100, completed now, a late cancel's reason cleared)."""

    # -- inside the caller's transaction ----------------------------------------------

    @abstractmethod
    def job_state(self, connection: Connection, job_id: uuid.UUID) -> Any:
        """Status, cancel intent, message, current execution, heartbeat, lost executions."""

    @abstractmethod
    def job_for_task(
        self, connection: Connection, task_id: str
    ) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        """``(job_id, step_id)`` of a Celery message, if the ledger knows it."""

    @abstractmethod
    def fail(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        errors: list[dict[str, Any]] | None = None,
        execution_id: str | None = None,
        worker: str | None = None,
        quiet_since: datetime | None = None,
        retries_exhausted: bool = False,
    ) -> bool:
        """Fail a live job or step with ``reason`` (and, for a job, ``errors``); only if it
        showed no sign of life since ``quiet_since`` when given."""

    @abstractmethod
    def retrying(self, connection: Connection, ref: Ref, *, execution_id: str, reason: str) -> bool:
        """The current execution ended and Celery delivers it again."""

    @abstractmethod
    def cancel(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        execution_id: str | None = None,
        worker: str | None = None,
        only_from: Collection[JobStatus] | None = None,
    ) -> bool:
        """Cancel a live job or step (only from ``only_from``, a part of its predecessors,
        when given)."""

    @abstractmethod
    def lose(
        self,
        connection: Connection,
        ref: Ref,
        *,
        reason: str,
        actor: Actor,
        worker: str | None,
        on_worker: str | None = None,
        worker_pid: int | None = None,
        execution_id: str | None = None,
        celery_task_id: str | None = None,
    ) -> bool:
        """An execution died without an outcome: ``running -> retrying``, one more lost
        execution (the event names ``worker``); only the execution that ran on
        ``on_worker``, pool process ``worker_pid``, as ``execution_id``, for message
        ``celery_task_id`` — whichever are given."""

    @abstractmethod
    def lose_before_start(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        execution: Execution,
        *,
        reason: str,
        actor: Actor,
    ) -> bool:
        """An execution died before its (lazy) start was written: ``previous ->
        running`` at ``execution.started_at``, then ``running -> retrying`` now, one more
        attempt and one more lost execution, under the guard of :meth:`may_start` (the
        lost executions may reach the limit: the next delivery then fails the job)."""

    @abstractmethod
    def start_unwritten(
        self, connection: Connection, job_id: uuid.UUID, execution: Execution
    ) -> bool:
        """The start of an execution that began at ``execution.started_at`` (a worker's
        clock: never dated before the job's last move) and was never written (its lazy
        start was pending): ``previous -> running`` under the guard of :meth:`may_start`."""

    @abstractmethod
    def orphan(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        celery_task_id: str,
        quiet_since: datetime,
        actor: Actor,
    ) -> bool:
        """A running job without a sign of life since ``quiet_since`` goes to ``retrying``
        under a new message (one more lost execution)."""

    @abstractmethod
    def requeue(
        self, connection: Connection, job_id: uuid.UUID, *, celery_task_id: str, actor: Actor
    ) -> bool:
        """Manual retry: back to ``queued`` under a new message, its run state reset."""

    @abstractmethod
    def request_cancel(
        self, connection: Connection, job_id: uuid.UUID, *, reason: str, actor: Actor
    ) -> bool:
        """Leave a cancel intent (and a log line) on a running job without one."""

    @abstractmethod
    def checkpoint(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        execution_id: str | None,
        progress: int | None = None,
        message: str | None = None,
    ) -> Any:
        """Heartbeat of a running job (its execution ``execution_id`` when given), raising
        its progress; its cancel intent and reason, or None when not current."""

    @abstractmethod
    def merge_metadata(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        execution_id: str | None,
        values: dict[str, Any],
    ) -> bool:
        """Merge ``values`` into a running job's metadata; False when not current."""

    @abstractmethod
    def append_log(
        self,
        connection: Connection,
        ref: Ref,
        *,
        message: str,
        level: str,
    ) -> None:
        """Append a log line to a job (or one of its steps)."""

    @abstractmethod
    def record_file(
        self,
        connection: Connection,
        ref: Ref,
        *,
        direction: Literal["in", "out"],
        uri: str,
        size: int | None,
        sha256: str | None,
        records: int | None,
    ) -> None:
        """Record a file a job (or one of its steps) read or wrote."""

    @abstractmethod
    def finish_steps(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        target: JobStatus,
        reason: str,
        actor: Actor,
        after_position: int = 0,
    ) -> None:
        """Move every step of a job after ``after_position`` that may go to ``target``
        there, with ``reason`` (the steps that will never run)."""

    # -- steps of a chained job ----------------------------------------------------------

    @abstractmethod
    def lock_job(self, connection: Connection, job_id: uuid.UUID) -> Any:
        """Lock a chained job's row (its steps' transitions apply one at a time); its
        status, cancel intent and reason, heartbeat. None: no such job."""

    @abstractmethod
    def step_state(self, connection: Connection, step_id: uuid.UUID) -> Any:
        """Status, position, message, execution, worker and lost executions of a step."""

    @abstractmethod
    def start_step(
        self, connection: Connection, ref: Ref, execution: Execution, *, lost: bool
    ) -> int | None:
        """Move a step to ``running`` for ``execution`` and write its events (``lost``:
        it was running, its execution lost); the attempt, or None when nothing moved."""

    @abstractmethod
    def start_parent(self, connection: Connection, job_id: uuid.UUID, *, worker: str) -> bool:
        """A chained job's first step started: the parent goes ``running``."""

    @abstractmethod
    def finish_step(
        self,
        connection: Connection,
        ref: Ref,
        *,
        execution_id: str,
        target: JobStatus,
        result: dict[str, Any] | None,
        message: str,
        worker: str | None,
    ) -> bool:
        """Move a step's current execution to ``target`` with its result."""

    @abstractmethod
    def complete_parent(
        self,
        connection: Connection,
        job_id: uuid.UUID,
        *,
        target: JobStatus,
        result: dict[str, Any],
        errors: list[dict[str, Any]],
        result_url: str | None,
        worker: str | None,
    ) -> bool:
        """The last step finished: the parent goes to ``target`` with the chain's result."""

    @abstractmethod
    def step_checkpoint(
        self,
        connection: Connection,
        step_id: uuid.UUID,
        *,
        execution_id: str,
        progress: int | None,
    ) -> int | None:
        """Heartbeat (and raise the progress) of a step's current execution; its position,
        or None when not current."""

    @abstractmethod
    def step_summary(self, connection: Connection, job_id: uuid.UUID) -> Sequence[Any]:
        """Position, type, status and result of every step of a job, in order."""
