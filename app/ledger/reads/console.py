"""The small reads the HTML console polls to update its pages in place.

Each is one narrow statement, scoped to a tenant, so a page can ask every two seconds
without weighing on the ledger: the progress of the jobs a list shows, the log lines of a
job after the last one the page has (a cursor: only new lines travel), a job's steps.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from app.db import engine
from models.tables import jobs, logs, steps

#: Most log lines one poll returns (the page asks again for the rest).
MAX_LOG_BATCH = 500


def progress_of(tenant: str, job_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """Status and progress of the jobs of ``tenant`` among ``job_ids`` (another tenant's
    ids are simply not found)."""
    if not job_ids:
        return []
    statement = select(
        jobs.c.id,
        jobs.c.status,
        jobs.c.progress,
        jobs.c.progress_message,
        jobs.c.attempts,
        jobs.c.failure_reason,
        jobs.c.completed_at,
    ).where(jobs.c.tenant == tenant, jobs.c.id.in_(list(job_ids)))
    with engine().connect() as connection:
        return [dict(row._mapping) for row in connection.execute(statement)]


def logs_after(job_id: uuid.UUID, cursor: int, limit: int = MAX_LOG_BATCH) -> list[dict[str, Any]]:
    """The job's log lines with an id above ``cursor``, oldest first, at most ``limit``."""
    statement = (
        select(logs.c.id, logs.c.step_id, logs.c.level, logs.c.message, logs.c.created_at)
        .where(logs.c.job_id == job_id, logs.c.id > cursor)
        .order_by(logs.c.id)
        .limit(limit)
    )
    with engine().connect() as connection:
        return [dict(row._mapping) for row in connection.execute(statement)]


def steps_of(job_id: uuid.UUID) -> list[dict[str, Any]]:
    """The job's steps in order, with what a timeline shows."""
    statement = (
        select(
            steps.c.id,
            steps.c.position,
            steps.c.step_type,
            steps.c.status,
            steps.c.progress,
            steps.c.started_at,
            steps.c.completed_at,
            steps.c.failure_reason,
        )
        .where(steps.c.job_id == job_id)
        .order_by(steps.c.position)
    )
    with engine().connect() as connection:
        return [dict(row._mapping) for row in connection.execute(statement)]


def jobs_by_task_ids(tenant: str, task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The jobs of ``tenant`` that Celery runs under ``task_ids`` (a job's own message or
    one of its steps'), each with the ``celery_task_id`` it was found by."""
    if not task_ids:
        return []
    columns = (jobs.c.id, jobs.c.name, jobs.c.type, jobs.c.status, jobs.c.progress)
    own = select(*columns, jobs.c.celery_task_id).where(
        jobs.c.tenant == tenant, jobs.c.celery_task_id.in_(list(task_ids))
    )
    of_steps = (
        select(*columns, steps.c.celery_task_id)
        .select_from(steps.join(jobs, steps.c.job_id == jobs.c.id))
        .where(jobs.c.tenant == tenant, steps.c.celery_task_id.in_(list(task_ids)))
    )
    with engine().connect() as connection:
        return [
            dict(row._mapping)
            for statement in (own, of_steps)
            for row in connection.execute(statement)
        ]
