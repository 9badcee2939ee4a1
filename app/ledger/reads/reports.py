"""Reading the ledger: the one query module behind the CLI, the HTTP API and the dashboard.

Usage::

    from app.ledger.reads import reports

    page = reports.list_jobs(reports.JobFilter(status=("failed",), tenant="acme"), limit=20)
    detail = reports.job_detail("20261124211536_2")      # by run name or UUID
    reports.stats(tenant="acme")
    reports.report("daily-summary")                       # a reporting view as rows

Everything here only reads (nothing goes through :mod:`app.ledger.transitions`, since
nothing changes). Rows come back as plain dicts keyed by column name; :func:`jsonable`
turns them into JSON-ready values for ``--json`` and the API. Lists are newest first and
paginated by page number: operators look at the recent past, and ``LIMIT/OFFSET`` over
the ``created_at`` index stays cheap for the first pages they actually read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, func, select, text

from app.db import engine
from app.exceptions import InvalidJobId, JobNotFound
from app.inputs import check_page
from app.ledger import engines
from app.ledger.reads import counts
from app.ledger.rules.naming import NAME_PATTERN
from app.ledger.rules.states import LIVE, JobStatus, normalize
from models.tables import definitions, events, files, jobs, logs, steps

#: Columns of a job in lists (the heavy documents — payload, result, errors — only in detail).
SUMMARY_COLUMNS = (
    "id",
    "name",
    "type",
    "status",
    "progress",
    "tenant",
    "subject",
    "trigger",
    "attempts",
    "worker",
    "failure_reason",
    "created_at",
    "started_at",
    "completed_at",
    "scheduled_for",
)

#: Reports by their CLI name: the SQL views of migration 0003 and their natural order.
REPORTS: dict[str, tuple[str, str]] = {
    "status-counts": ("report_status_counts", "tenant, type, status"),
    "daily-summary": ("report_daily_summary", "day DESC, type"),
    "daily-history": ("report_daily_history", "day DESC, type, tenant, source"),
    "recent-failures": ("report_recent_failures", "completed_at DESC"),
    "step-durations": ("report_step_durations", "started_at DESC, position"),
}

#: Largest page any caller may ask for (a list is for reading, exports are for bulk).
MAX_LIMIT = 500


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows; empty fields do not filter. Statuses accept other job
    systems' words too (``DONE``, ``Cancelled``…), mapped by
    :func:`app.ledger.rules.states.normalize`."""

    status: tuple[str, ...] = ()
    type: str | None = None
    tenant: str | None = None
    subject: str | None = None
    since: datetime | None = None
    #: The jobs made from one definition (its runs).
    definition_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; ``has_more`` says whether the next page has rows."""

    items: list[dict[str, Any]]
    page: int
    limit: int
    has_more: bool


@dataclass(frozen=True)
class JobDetail:
    """A job with everything recorded about it, each list in the order it happened."""

    job: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The detail as one JSON-ready document."""
        document: dict[str, Any] = jsonable(
            {
                "job": self.job,
                "steps": self.steps,
                "events": self.events,
                "logs": self.logs,
                "files": self.files,
            }
        )
        return document


def parse_job_ref(ref: str | uuid.UUID) -> uuid.UUID | str:
    """A job reference as a UUID, or as a run name to look up.

    Raises:
        InvalidJobId: neither a UUID nor a ``YYYYMMDDhhmmss[_N]`` run name.
    """
    if isinstance(ref, uuid.UUID):
        return ref
    value = ref.strip()
    if NAME_PATTERN.match(value):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidJobId(ref) from None


def resolve_job_id(ref: str | uuid.UUID) -> uuid.UUID:
    """The id of the job a UUID or run name designates.

    Raises:
        InvalidJobId: the reference is malformed.
        JobNotFound: no such job.
    """
    parsed = parse_job_ref(ref)
    condition = jobs.c.id == parsed if isinstance(parsed, uuid.UUID) else jobs.c.name == parsed
    with engine().connect() as connection:
        found = connection.execute(select(jobs.c.id).where(condition)).scalar()
    if found is None:
        raise JobNotFound(ref)
    return uuid.UUID(str(found))


def list_jobs(filters: JobFilter | None = None, *, limit: int = 50, page: int = 1) -> Page:
    """Jobs matching ``filters``, newest first, ``limit`` per page (pages count from 1).

    Raises:
        ValueError: an unknown status word, or a limit/page out of range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    check_page(page)
    query = _filtered(
        select(*(jobs.c[name] for name in SUMMARY_COLUMNS), _definition_name()), filters
    )
    query = (
        query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .limit(limit + 1)
        .offset((page - 1) * limit)
    )
    with engine().connect() as connection:
        rows = _dicts(connection.execute(query))
    return Page(items=rows[:limit], page=page, limit=limit, has_more=len(rows) > limit)


def count_jobs(filters: JobFilter | None = None) -> int:
    """How many jobs match ``filters`` (every page together; the API's ``total``).

    Without a subject or definition filter the answer comes from the status counts
    (:mod:`app.ledger.reads.counts`: exact, and fast at tens of millions of jobs); those
    are not kept there, so these filters count rows.
    """
    filters = filters or JobFilter()
    if not filters.subject and filters.definition_id is None:
        return total_of(_counts_by_type(filters.tenant, filters.since), filters)
    query = _filtered(select(func.count()).select_from(jobs), filters)
    with engine().connect() as connection:
        return int(connection.execute(query).scalar_one())


def total_of(by_type: Mapping[str, Mapping[str, int]], filters: JobFilter) -> int:
    """The jobs of a :func:`stats` ``by_type`` (of ``filters.tenant`` and ``since``) that
    match the status and type of ``filters``: a list's total from counts already read."""
    wanted = {normalize(s).value for s in filters.status}
    return sum(
        jobs_in_status
        for job_type, statuses in by_type.items()
        if not filters.type or job_type == filters.type
        for status, jobs_in_status in statuses.items()
        if not wanted or status in wanted
    )


def _counts_by_type(tenant: str | None, since: datetime | None) -> dict[str, dict[str, int]]:
    by_type: dict[str, dict[str, int]] = {}
    for row in counts.status_counts(tenant=tenant, since=since):
        by_type.setdefault(row.type, {})[row.status] = int(row.jobs)
    return dict(sorted(by_type.items()))


def jobs_by_id(job_ids: Sequence[uuid.UUID], *, tenant: str) -> list[dict[str, Any]]:
    """The summary columns of ``tenant``'s jobs among ``job_ids``, in the order of
    ``job_ids`` (one statement; a job that is not there is left out)."""
    if not job_ids:
        return []
    query = select(*(jobs.c[name] for name in SUMMARY_COLUMNS), _definition_name()).where(
        jobs.c.id.in_(job_ids), jobs.c.tenant == tenant
    )
    with engine().connect() as connection:
        found = {uuid.UUID(str(row["id"])): row for row in _dicts(connection.execute(query))}
    return [found[job_id] for job_id in job_ids if job_id in found]


def job_detail(ref: str | uuid.UUID, *, log_limit: int = 1000) -> JobDetail:
    """A job with its steps, events, files and its last ``log_limit`` log lines; the job
    has ``definition``, the name of the definition it was made from (or None).

    Raises:
        InvalidJobId: the reference is malformed.
        JobNotFound: no such job.
    """
    job_id = resolve_job_id(ref)
    with engine().connect() as connection:
        job = _dicts(
            connection.execute(
                select(jobs, definitions.c.name.label("definition"))
                .select_from(jobs.outerjoin(definitions, jobs.c.definition_id == definitions.c.id))
                .where(jobs.c.id == job_id)
            )
        )
        if not job:
            raise JobNotFound(ref)  # purged between the two reads
        last_logs = (
            select(logs).where(logs.c.job_id == job_id).order_by(logs.c.id.desc()).limit(log_limit)
        ).subquery()
        return JobDetail(
            job=job[0],
            steps=_dicts(
                connection.execute(
                    select(steps).where(steps.c.job_id == job_id).order_by(steps.c.position)
                )
            ),
            events=_dicts(
                connection.execute(
                    select(events).where(events.c.job_id == job_id).order_by(events.c.id)
                )
            ),
            logs=_dicts(connection.execute(select(last_logs).order_by(last_logs.c.id))),
            files=_dicts(
                connection.execute(
                    select(files).where(files.c.job_id == job_id).order_by(files.c.id)
                )
            ),
        )


def status_totals(*, tenant: str | None = None, since: datetime | None = None) -> dict[str, Any]:
    """Counts per status and per type and status, and how many jobs are live: what a page
    polled every two seconds shows (:func:`stats` without the oldest live job's age, one
    statement fewer). Exact and fast, like :func:`stats`."""
    by_type = _counts_by_type(tenant, since)
    by_status: dict[str, int] = {status.value: 0 for status in JobStatus}
    for statuses in by_type.values():
        for status, jobs_in_status in statuses.items():
            by_status[status] += jobs_in_status
    return {
        "total": sum(by_status.values()),
        "live": sum(by_status[s.value] for s in LIVE),
        "by_status": by_status,
        "by_type": by_type,
    }


def stats(*, tenant: str | None = None, since: datetime | None = None) -> dict[str, Any]:
    """Counts per status and per type and status, how many jobs are live, and the age of
    the oldest live one (a queue that stopped draining shows here first). Exact, and fast
    at tens of millions of jobs: settled counts plus the rest (:mod:`app.ledger.reads.counts`)."""
    filters = JobFilter(tenant=tenant, since=since)
    # OFFSET 0 keeps the planner from walking ix_jobs_created_at from the oldest job until
    # it meets a live one (the newest, so ~all of them: seconds at 10M); the few live rows
    # are found through a status index instead (ix_jobs_status or ix_jobs_live).
    live = _filtered(
        select(jobs.c.created_at).where(jobs.c.status.in_([s.value for s in LIVE])), filters
    ).offset(0)
    oldest = select(func.min(live.subquery().c.created_at))
    totals = status_totals(tenant=tenant, since=since)
    with engine().connect() as connection:
        oldest_live = connection.execute(oldest).scalar()
    return {**totals, "oldest_live_created_at": oldest_live}


def report(name: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The rows of one reporting view (see :data:`REPORTS`), in its natural order.

    Raises:
        KeyError: an unknown report name; the message lists the known ones.
    """
    if name not in REPORTS:
        raise KeyError(f"unknown report {name!r}; known: {', '.join(REPORTS)}")
    view, order = REPORTS[name]
    # Names and orders come from REPORTS above, never from the caller.
    statement = text(f"SELECT * FROM {view} ORDER BY {order} LIMIT :limit")
    with engine().connect() as connection:
        return _dicts(connection.execute(statement, {"limit": limit}))


def database_now(connection: Connection) -> datetime:
    """The database clock (UTC, aware): ages are measured against the clock that stamped
    the rows, not against the caller's."""
    return engines.current().database_now(connection)


def jsonable(value: Any) -> Any:
    """``value`` with UUIDs, timestamps and decimals turned into JSON types."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


# -- internals ---------------------------------------------------------------------------


def _filtered(query: Select[Any], filters: JobFilter | None) -> Select[Any]:
    if filters is None:
        return query
    if filters.status:
        query = query.where(jobs.c.status.in_([normalize(s).value for s in filters.status]))
    if filters.type:
        query = query.where(jobs.c.type == filters.type)
    if filters.tenant:
        query = query.where(jobs.c.tenant == filters.tenant)
    if filters.subject:
        query = query.where(jobs.c.subject == filters.subject)
    if filters.since is not None:
        query = query.where(jobs.c.created_at >= filters.since)
    if filters.definition_id is not None:
        query = query.where(jobs.c.definition_id == filters.definition_id)
    return query


def _definition_name() -> Any:
    """A job's ``definition``: the name of the definition it was made from, or None (as
    the job document shows it)."""
    return (
        select(definitions.c.name)
        .where(definitions.c.id == jobs.c.definition_id)
        .scalar_subquery()
        .label("definition")
    )


def _dicts(rows: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in rows]
