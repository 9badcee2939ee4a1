"""Bulk operations: cancel or retry every job of a tenant that matches a filter, as one
named, recorded operation.

Usage (the API and the CLI call these; ``actor`` is who asked: the API key's name)::

    from app.ledger.operations import bulk
    from app.ledger.reads.job_search import JobFilter

    wanted = JobFilter(tenant="acme", statuses=("failed",), types=("export",))
    bulk.preview("retry", wanted)                      # dry run: how many it would retry
    operation = bulk.run("retry", wanted, "retry-exports-1130", actor="ci-bot")
    operation.done, operation.skipped, operation.matched

What holds, and why:

- **Through the ledger's own paths.** Each job is moved by
  :func:`app.ledger.operations.actions.cancel` or :func:`~app.ledger.operations.actions.
  retry`, exactly as a single cancel or retry: guarded transitions, so every history stays
  a valid walk, and a retry publishes its new message as usual. Each event they write
  carries the operation's id and the key's name (:mod:`app.ledger.rules.attribution`);
  ``jobs.operation_id`` names the last operation that acted on the job, so a retried job
  keeps its link to the operation that queued it again.
- **Only what the action can move.** A cancel selects the matching live jobs (``queued``,
  ``retrying``, ``running``), a retry the matching ``failed`` and ``canceled`` ones: the
  dry-run count is what the operation will act on. A job that moved on between its
  selection and its turn (it finished, someone else retried it) is refused by its guarded
  transition and counted ``skipped``: never forced.
- **Idempotent by (tenant, name).** Running an operation again with the same name, action
  and filter returns the recorded one; it resumes only one that stopped half-way (status
  ``failed``, or ``running`` with no progress for :data:`STALE_AFTER`), and a resumed run
  leaves out every job the operation already acted on. The same name with another action
  or filter is refused.
- **Bounded.** A filter matching more than ``JOBLEDGER_BULK_MAX_JOBS`` jobs is refused
  before anything is written. Within the limit the jobs are taken in batches of
  ``JOBLEDGER_BULK_BATCH_SIZE`` (oldest first, by a keyset cursor), and ``done`` and
  ``skipped`` are written after each batch: a large operation shows its progress, and
  jobs created after the operation started are not part of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.config import settings
from app.db import engine, in_transaction
from app.exceptions import (
    JobNotFound,
    OperationConflict,
    OperationNotFound,
    OperationTooLarge,
    TransitionRefused,
)
from app.ledger.operations import actions
from app.ledger.reads import job_search
from app.ledger.reads.job_search import JobFilter
from app.ledger.reads.reports import jsonable
from app.ledger.rules.actors import Actor
from app.ledger.rules.attribution import attributed
from app.ledger.rules.states import PREDECESSORS, JobStatus
from models.tables import events, jobs
from models.tables import operations as table

Action = Literal["cancel", "retry"]
ACTIONS: tuple[str, ...] = get_args(Action)
#: The statuses each action moves a job from (the state machine's edges).
SOURCES: dict[str, frozenset[JobStatus]] = {
    "cancel": PREDECESSORS[JobStatus.CANCELED],
    "retry": PREDECESSORS[JobStatus.QUEUED],
}
#: A ``running`` operation without progress for this long is taken as stopped (its
#: process died): running it again resumes it.
STALE_AFTER = timedelta(seconds=60)
#: Called with the operation after each batch (the CLI prints progress with it).
Progress = Callable[["Operation"], None]


@dataclass(frozen=True)
class Operation:
    """A recorded bulk operation (a ``job_operations`` row)."""

    id: int
    tenant: str
    name: str
    action: str
    filter: dict[str, Any]
    matched: int
    done: int
    skipped: int
    status: str
    error: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        """Done: every matched job acted on or skipped."""
        return self.status == "done"

    def as_dict(self) -> dict[str, Any]:
        """The operation as a JSON-ready document (the API's ``OperationDocument``)."""
        document: dict[str, Any] = jsonable(asdict(self))
        return document


def preview(action: Action, job_filter: JobFilter) -> int:
    """Dry run: how many jobs the operation would act on now (nothing is written)."""
    query = select(func.count()).select_from(jobs).where(*selection(action, job_filter))
    with engine().connect() as connection:
        return int(connection.execute(query).scalar_one())


def run(
    action: Action,
    job_filter: JobFilter,
    name: str,
    actor: str,
    *,
    via: Actor = "api",
    on_progress: Progress | None = None,
) -> Operation:
    """Record the operation and act on every job it matches (or return the recorded one:
    see the module docstring); ``via`` is the tool recorded as each event's ``actor``.

    Raises:
        ValueError: an unknown action.
        OperationTooLarge: the filter matches more than ``JOBLEDGER_BULK_MAX_JOBS``.
        OperationConflict: the name is taken by an operation with another action or filter.
    """
    operation, claimed = start(action, job_filter, name, actor)
    if not claimed:
        return operation
    return proceed(operation, via=via, on_progress=on_progress)


def start(action: Action, job_filter: JobFilter, name: str, actor: str) -> tuple[Operation, bool]:
    """Record the operation (or find it), and whether the caller now owns its run (it is
    new, or stopped half-way): the API answers with the row at once and proceeds after.

    Raises: as :func:`run`.
    """
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    tenant = job_filter.tenant
    if tenant is None:
        raise ValueError("tenant: a bulk operation acts on one tenant's jobs; name it")
    query = job_filter.as_query()
    existing = find(tenant, name)
    if existing is not None:
        return _again(existing, action, query)
    matched = preview(action, job_filter)
    limit = settings().bulk_max_jobs
    if matched > limit:
        raise OperationTooLarge(matched, limit)
    row = {
        "tenant": tenant,
        "name": name,
        "action": action,
        "filter": query,
        "matched": matched,
        "status": "running",
        "created_by": actor,
    }
    try:
        new_id = in_transaction(
            lambda c: c.execute(insert(table).values(row).returning(table.c.id)).scalar_one(),
            f"bulk operation {name!r}",
        )
    except IntegrityError:  # the same name started by a concurrent request: that one runs
        raced = find(tenant, name)
        if raced is None:
            raise
        return _again(raced, action, query)[0], False
    return get(tenant, int(new_id)), True


def proceed(
    operation: Operation,
    *,
    via: Actor = "api",
    on_progress: Progress | None = None,
) -> Operation:
    """Act on the operation's jobs batch by batch until none is left; on an error the
    operation is ``failed`` with it (running it again resumes)."""
    action: Action = "cancel" if operation.action == "cancel" else "retry"
    wanted = JobFilter.from_query(operation.tenant, operation.filter)
    wanted = _within(wanted, operation)
    budget = settings().bulk_max_jobs - operation.done - operation.skipped
    cursor: tuple[datetime, uuid.UUID] | None = None
    try:
        while budget > 0:
            batch = _next_batch(action, wanted, operation.created_at, cursor, budget)
            if not batch:
                break
            cursor = batch[-1]
            done, skipped = _act(action, operation, [job_id for _, job_id in batch], via)
            budget -= len(batch)
            operation = _progress(operation, done, skipped)
            if on_progress is not None:
                on_progress(operation)
    except Exception as error:
        _stop(operation, f"{type(error).__name__}: {error}")
        raise
    return _finish(operation)


def find(tenant: str, name: str) -> Operation | None:
    """The tenant's operation of that name, or None."""
    return _one(and_(table.c.tenant == tenant, table.c.name == name))


def get(tenant: str, operation_id: int) -> Operation:
    """The tenant's operation with that id.

    Raises:
        OperationNotFound: none (or another tenant's: indistinguishable on purpose).
    """
    found = _one(and_(table.c.tenant == tenant, table.c.id == operation_id))
    if found is None:
        raise OperationNotFound(operation_id)
    return found


def listed(tenant: str, *, limit: int = 50, page: int = 1) -> tuple[list[Operation], int]:
    """A page of the tenant's operations, newest first, and how many it has in all."""
    query = (
        select(table)
        .where(table.c.tenant == tenant)
        .order_by(table.c.created_at.desc(), table.c.id.desc())
        .limit(limit)
        .offset((page - 1) * limit)
    )
    total = select(func.count()).select_from(table).where(table.c.tenant == tenant)
    with engine().connect() as connection:
        rows = [_operation(row) for row in connection.execute(query)]
        return rows, int(connection.execute(total).scalar_one())


def selection(action: Action, job_filter: JobFilter) -> list[Any]:
    """The WHERE conditions of the jobs an operation acts on: the filter's, narrowed to
    the statuses the action moves a job from."""
    sources = sorted(status.value for status in SOURCES[action])
    return [*job_search.conditions(job_filter), jobs.c.status.in_(sources)]


# -- internals ---------------------------------------------------------------------------


def _again(existing: Operation, action: str, query: dict[str, Any]) -> tuple[Operation, bool]:
    """The same operation asked for again: refused with another action or filter; owned
    again (resumed) only when it stopped half-way."""
    if existing.action != action or existing.filter != query:
        raise OperationConflict(existing.tenant, existing.name)
    if existing.status == "done":
        return existing, False
    claimed = in_transaction(
        lambda c: _claim(c, existing), f"bulk operation {existing.name!r} resumed"
    )
    return (get(existing.tenant, existing.id), True) if claimed else (existing, False)


def _claim(connection: Connection, operation: Operation) -> bool:
    """Take over a stopped operation: failed, or running without progress for a while.
    The guard on ``updated_at`` makes two resumers race for one row: one wins. The run
    that stopped may have acted on jobs of its last batch without counting or linking
    them (it died between a job's transition and the batch's progress): the events say
    which, so they are linked and counted here, and the resumed run leaves them out."""
    now = connection.execute(select(func.now())).scalar_one()
    stopped = or_(table.c.status == "failed", table.c.updated_at < now - STALE_AFTER)
    claimed = connection.execute(
        update(table)
        .where(
            table.c.id == operation.id,
            table.c.status != "done",
            table.c.updated_at == operation.updated_at,
            stopped,
        )
        .values(status="running", error=None, updated_at=func.now())
    ).rowcount
    if claimed:
        _recount(connection, operation)
    return bool(claimed)


def _recount(connection: Connection, operation: Operation) -> None:
    """``done`` from the operation's events, and its unlinked jobs linked."""
    acted = select(events.c.job_id).where(events.c.operation_id == operation.id).distinct()
    connection.execute(
        update(jobs)
        .where(jobs.c.id.in_(acted), jobs.c.operation_id.is_(None))
        .values(operation_id=operation.id)
    )
    done = select(func.count()).select_from(acted.subquery()).scalar_subquery()
    connection.execute(update(table).where(table.c.id == operation.id).values(done=done))


def _within(wanted: JobFilter, operation: Operation) -> JobFilter:
    """The filter of a run of ``operation``: without the jobs it already acted on."""
    return replace(wanted, not_in_operation=operation.id)


def _next_batch(
    action: Action,
    wanted: JobFilter,
    started: datetime,
    cursor: tuple[datetime, uuid.UUID] | None,
    budget: int,
) -> list[tuple[datetime, uuid.UUID]]:
    """The next jobs to act on, oldest first, after ``cursor``; only jobs created before
    the operation started."""
    query = select(jobs.c.created_at, jobs.c.id).where(
        *selection(action, wanted), jobs.c.created_at <= started
    )
    if cursor is not None:
        moment, last = cursor
        query = query.where(
            or_(jobs.c.created_at > moment, and_(jobs.c.created_at == moment, jobs.c.id > last))
        )
    size = min(settings().bulk_batch_size, budget)
    query = query.order_by(jobs.c.created_at, jobs.c.id).limit(size)
    with engine().connect() as connection:
        return [(row.created_at, uuid.UUID(str(row.id))) for row in connection.execute(query)]


def _act(
    action: Action,
    operation: Operation,
    job_ids: list[uuid.UUID],
    via: Actor,
) -> tuple[list[uuid.UUID], int]:
    """Cancel or retry each job through the ledger's own path; the ones that moved on
    meanwhile are refused there and counted as skipped."""
    done: list[uuid.UUID] = []
    skipped = 0
    reason = f"bulk operation {operation.name!r} by {operation.created_by}"
    with attributed(operation.created_by, operation_id=operation.id):
        for job_id in job_ids:
            try:
                if action == "cancel":
                    actions.cancel(job_id, actor=via, reason=reason)
                else:
                    actions.retry(job_id, actor=via)
            except (TransitionRefused, JobNotFound):  # moved on (or purged): never forced
                skipped += 1
                continue
            done.append(job_id)
    return done, skipped


def _progress(operation: Operation, done: list[uuid.UUID], skipped: int) -> Operation:
    """Link the batch's jobs to the operation and count them, in one transaction."""

    def work(connection: Connection) -> None:
        if done:
            connection.execute(
                update(jobs).where(jobs.c.id.in_(done)).values(operation_id=operation.id)
            )
        connection.execute(
            update(table)
            .where(table.c.id == operation.id)
            .values(
                done=table.c.done + len(done),
                skipped=table.c.skipped + skipped,
                updated_at=func.now(),
            )
        )

    in_transaction(work, f"bulk operation {operation.name!r} progress")
    return get(operation.tenant, operation.id)


def _finish(operation: Operation) -> Operation:
    in_transaction(
        lambda c: c.execute(
            update(table)
            .where(table.c.id == operation.id)
            .values(status="done", updated_at=func.now(), finished_at=func.now())
        ),
        f"bulk operation {operation.name!r} done",
    )
    return get(operation.tenant, operation.id)


def _stop(operation: Operation, error: str) -> None:
    in_transaction(
        lambda c: c.execute(
            update(table)
            .where(table.c.id == operation.id)
            .values(status="failed", error=error[:1000], updated_at=func.now())
        ),
        f"bulk operation {operation.name!r} stopped",
    )


def _one(condition: Any) -> Operation | None:
    with engine().connect() as connection:
        row = connection.execute(select(table).where(condition)).first()
    return None if row is None else _operation(row)


def _operation(row: Any) -> Operation:
    from app.ledger.engines.base import aware

    values = dict(row._mapping)
    for column in ("created_at", "updated_at", "finished_at"):
        if values[column] is not None:
            values[column] = aware(values[column])
    return Operation(**values)
