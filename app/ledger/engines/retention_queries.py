"""Every statement the retention purge runs, named, each with a one-line comment.

Kept apart from :mod:`app.ledger.engines.queries` (the state machine's statements): the purge
removes whole finished jobs and never changes a live one, so it needs no transition —
but like every other ledger statement it lives in one place, as SQLAlchemy Core.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    and_,
    delete,
    func,
    select,
    update,
)

from app.ledger.engines.base import Engine
from app.ledger.rules.archive_only import ARCHIVE_ONLY_TYPES
from app.ledger.rules.states import TERMINAL
from models.tables import events, files, jobs, logs, rollups, steps

#: The children of a job, in the order they are deleted (before the job row itself).
CHILDREN = {"events": events, "logs": logs, "files": files, "steps": steps}

_TERMINAL = sorted(s.value for s in TERMINAL)
_ARCHIVE_ONLY = sorted(ARCHIVE_ONLY_TYPES)


def _purgeable(cutoff: datetime, exclude: uuid.UUID | None, archiving: bool) -> list[Any]:
    # Terminal, finished before the cutoff, not the purge job itself, and without a child
    # job that must stay (deleting a parent cascades to its child jobs). Without an
    # archive, the archive-only types stay (and so do their parents).
    child = jobs.alias("child")
    gone = [child.c.status.in_(_TERMINAL), child.c.completed_at < cutoff]
    if not archiving:
        gone.append(child.c.type.not_in(_ARCHIVE_ONLY))
    keeps_child = (
        select(child.c.id).where(child.c.parent_job_id == jobs.c.id, ~and_(*gone)).exists()
    )
    conditions = [
        jobs.c.status.in_(_TERMINAL),
        jobs.c.completed_at < cutoff,
        ~keeps_child,
    ]
    if not archiving:
        conditions.append(jobs.c.type.not_in(_ARCHIVE_ONLY))
    if exclude is not None:
        conditions.append(jobs.c.id != exclude)
    return conditions


def count_purgeable(cutoff: datetime, exclude: uuid.UUID | None, archiving: bool) -> Select[Any]:
    # How many jobs the purge would delete now.
    return select(func.count()).select_from(jobs).where(*_purgeable(cutoff, exclude, archiving))


def count_kept_unarchived(cutoff: datetime) -> Select[Any]:
    # How many jobs of the archive-only types are old enough to go but stay, for want
    # of an archive to write them to.
    return (
        select(func.count())
        .select_from(jobs)
        .where(
            jobs.c.status.in_(_TERMINAL),
            jobs.c.completed_at < cutoff,
            jobs.c.type.in_(_ARCHIVE_ONLY),
        )
    )


def count_children(
    table: Any, cutoff: datetime, exclude: uuid.UUID | None, archiving: bool
) -> Select[Any]:
    # How many rows of one child table belong to purgeable jobs (for a dry run).
    ids = select(jobs.c.id).where(*_purgeable(cutoff, exclude, archiving))
    return select(func.count()).select_from(table).where(table.c.job_id.in_(ids))


def lock_batch(
    cutoff: datetime, exclude: uuid.UUID | None, size: int, archiving: bool
) -> Select[Any]:
    # The next batch of purgeable jobs, oldest first, locked; rows another purge holds
    # are skipped rather than waited for.
    return (
        select(jobs)
        .where(*_purgeable(cutoff, exclude, archiving))
        .order_by(jobs.c.completed_at, jobs.c.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )


def children_of(table: Any, job_ids: Sequence[uuid.UUID]) -> Select[Any]:
    # The rows of one child table that belong to a batch, in the order they were written.
    order = [table.c.position] if table is steps else [table.c.id]
    return select(table).where(table.c.job_id.in_(job_ids)).order_by(table.c.job_id, *order)


def delete_children(table: Any, job_ids: Sequence[uuid.UUID]) -> Delete:
    # Remove one child table's rows of a batch.
    return delete(table).where(table.c.job_id.in_(job_ids))


def delete_jobs(job_ids: Sequence[uuid.UUID]) -> Delete:
    # Remove the job rows of a batch (still terminal: they were locked since selection).
    return delete(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status.in_(_TERMINAL))


def ensure_rollup(engine: Engine, day: date, job_type: str, tenant: str) -> Insert:
    # Create the rollup row of a day, type and tenant unless it exists (`engine`'s upsert).
    stmt = engine.insert(rollups).values(day=day, type=job_type, tenant=tenant, histogram={})
    return stmt.on_conflict_do_nothing(index_elements=["day", "type", "tenant"])  # type: ignore[no-any-return]


def lock_rollup(day: date, job_type: str, tenant: str) -> Select[Any]:
    # Read one rollup row for update (two purges folding into the same day serialise here).
    return (
        select(rollups)
        .where(rollups.c.day == day, rollups.c.type == job_type, rollups.c.tenant == tenant)
        .with_for_update()
    )


def update_rollup(day: date, job_type: str, tenant: str, values: dict[str, Any]) -> Update:
    # Write the merged counts and histogram of one rollup row.
    return (
        update(rollups)
        .where(rollups.c.day == day, rollups.c.type == job_type, rollups.c.tenant == tenant)
        .values(updated_at=func.now(), **values)
    )
