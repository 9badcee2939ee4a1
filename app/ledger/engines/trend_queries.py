"""Every statement of the trend rollups (:mod:`app.ledger.reads.trends` says how they
work), named, each with a one-line comment. The parts that differ by database (time
buckets, durations, their histogram bucket) are the engine's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Insert, Select, Update, case, func, literal, select, update

from app.ledger.engines.base import Engine
from app.ledger.rules.states import LIVE, TERMINAL
from models.tables import events, hourly_rollups, jobs, trend_totals, trend_watermark

_TERMINAL = sorted(s.value for s in TERMINAL)
Unit = Literal["minute", "hour"]


def read_watermark() -> Select[Any]:
    # Where the rollups end, and their version (raised by every write to them).
    return select(trend_watermark.c.settled_before, trend_watermark.c.version).where(
        trend_watermark.c.id == 1
    )


def claim_watermark(seen_version: int, settled_before: datetime | None) -> Update:
    # Move the watermark and raise the version, only if nobody did since it was read:
    # the first write of a rollup transaction (it takes the row's lock where there is one).
    return (
        update(trend_watermark)
        .where(trend_watermark.c.id == 1, trend_watermark.c.version == seen_version)
        .values(settled_before=settled_before, version=trend_watermark.c.version + 1)
    )


def oldest_finished() -> Select[Any]:
    # Where a first settle starts: the oldest completion the ledger holds.
    return select(func.min(jobs.c.completed_at)).where(jobs.c.status.in_(_TERMINAL))


def _finished(
    query: Select[Any], since: datetime | None, until: datetime | None, tenant: str | None
) -> Select[Any]:
    # Finished jobs completed in [since, until) of one tenant (each bound optional).
    query = query.where(jobs.c.status.in_(_TERMINAL), jobs.c.completed_at.is_not(None))
    if since is not None:
        query = query.where(jobs.c.completed_at >= since)
    if until is not None:
        query = query.where(jobs.c.completed_at < until)
    if tenant is not None:
        query = query.where(jobs.c.tenant == tenant)
    return query


def _lifeline_events() -> Any:
    # How many events of the job (its own, not its steps') the lifeline wrote.
    return (
        select(func.count())
        .select_from(events)
        .where(events.c.job_id == jobs.c.id, events.c.step_id.is_(None))
        .where(events.c.actor == "lifeline")
        .scalar_subquery()
    )


def lifeline_events_of(job_ids: Sequence[uuid.UUID]) -> Select[Any]:
    # Per job of a purge batch, how many events the lifeline wrote (before they go).
    return (
        select(events.c.job_id, func.count().label("rescues"))
        .where(events.c.job_id.in_(job_ids), events.c.step_id.is_(None))
        .where(events.c.actor == "lifeline")
        .group_by(events.c.job_id)
    )


def _job_counts(*grouping: Any, rescues: bool = True) -> Select[Any]:
    # Jobs per ``grouping``, tenant, type and status, with their retries (starts beyond
    # the first), lost executions and (unless a chart needs none) lifeline rescues: one
    # look into job_events per job, which settles and /metrics pay, charts do not.
    retries = case((jobs.c.attempts > 1, jobs.c.attempts - 1), else_=0)
    keys = (*grouping, jobs.c.tenant, jobs.c.type, jobs.c.status)
    return select(
        *keys,
        func.count().label("jobs"),
        func.sum(retries).label("retries"),
        func.sum(jobs.c.lost_executions).label("lost_executions"),
        (func.sum(_lifeline_events()) if rescues else literal(0)).label("lifeline_rescues"),
    ).group_by(*keys)


def live_jobs(tenant: str | None) -> Select[Any]:
    # Live jobs per tenant, type and status with what happened to them so far (through
    # the small partial index of live jobs).
    query = _job_counts().where(jobs.c.status.in_(sorted(s.value for s in LIVE)))
    if tenant is not None:
        query = query.where(jobs.c.tenant == tenant)
    return query


def finished_counts(
    engine: Engine,
    unit: Unit,
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    *,
    rescues: bool = True,
) -> Select[Any]:
    # Finished jobs per time bucket, tenant, type and status, with their retries, lost
    # executions and lifeline rescues.
    bucket = engine.time_bucket(jobs.c.completed_at, unit).label("bucket")
    return _finished(_job_counts(bucket, rescues=rescues), since, until, tenant)


def duration_histogram(
    engine: Engine,
    unit: Unit,
    kind: Literal["wait", "run"],
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
) -> Select[Any]:
    # Finished jobs that started, per time bucket, tenant, type and histogram bucket of
    # their queue wait (started - created) or run duration (completed - started).
    if kind == "wait":
        seconds = engine.seconds_between(jobs.c.started_at, jobs.c.created_at)
    else:
        seconds = engine.seconds_between(jobs.c.completed_at, jobs.c.started_at)
    bucket = engine.time_bucket(jobs.c.completed_at, unit).label("bucket")
    histogram_bucket = engine.duration_bucket(seconds).label("histogram_bucket")
    query = (
        select(
            bucket,
            jobs.c.tenant,
            jobs.c.type,
            histogram_bucket,
            func.count().label("jobs"),
            func.sum(seconds).label("seconds"),
        )
        .where(jobs.c.started_at.is_not(None))
        .group_by(bucket, jobs.c.tenant, jobs.c.type, histogram_bucket)
    )
    return _finished(query, since, until, tenant)


def hours_between(first: datetime, last: datetime) -> Select[Any]:
    # The hourly rows of every tenant from ``first`` to ``last`` (a merge's hours; its
    # writer holds the watermark: no other writer meanwhile).
    return select(hourly_rollups).where(
        hourly_rollups.c.hour >= first, hourly_rollups.c.hour <= last
    )


def store_hours(engine: Engine, columns: Sequence[str]) -> Insert:
    # Write merged hourly rows (executemany: one row per hour, type and tenant),
    # replacing ``columns`` of the rows that exist.
    return _upsert(engine, hourly_rollups, ["hour", "type", "tenant"], columns)


def store_totals(engine: Engine, columns: Sequence[str]) -> Insert:
    # Write merged all-time rows (executemany: one per type and tenant).
    return _upsert(engine, trend_totals, ["type", "tenant"], columns)


def _upsert(engine: Engine, table: Any, keys: list[str], columns: Sequence[str]) -> Insert:
    # INSERT … ON CONFLICT (keys) DO UPDATE SET each of ``columns`` to the new row's.
    stmt = engine.insert(table)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=keys, set_={name: stmt.excluded[name] for name in columns}
    )


def hours_from(since: datetime, tenant: str | None) -> Select[Any]:
    # The hourly rows from ``since`` on (one tenant's, or every tenant's).
    query = select(hourly_rollups).where(hourly_rollups.c.hour >= since)
    if tenant is not None:
        query = query.where(hourly_rollups.c.tenant == tenant)
    return query


def totals(tenant: str | None) -> Select[Any]:
    # The all-time rows (one tenant's, or every tenant's).
    query = select(trend_totals)
    if tenant is not None:
        query = query.where(trend_totals.c.tenant == tenant)
    return query
