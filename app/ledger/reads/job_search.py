"""Searching a tenant's jobs: the console's filters, one query for the API, the CLI, the
dashboard and bulk operations.

Usage::

    from app.ledger.reads import job_search

    wanted = job_search.JobFilter(tenant="acme", statuses=("failed",), text="timeout",
                                  sort="-finished")
    page = job_search.search(wanted, limit=50, page=1)   # a reports.Page
    job_search.count(wanted)                              # every page together

The filter's fields are named after the query parameters every client uses (``q``,
``status``, ``type``, ``queue``, ``definition``, ``worker``, ``created_after``,
``created_before``, ``dead``, ``sort``; see :data:`FILTER_NAMES`, :data:`QUERY_NAMES`
and :meth:`JobFilter.from_query`), so a dashboard URL, an API call, a CLI command and a
bulk operation's stored filter say the same thing the same way.

Every API and dashboard search is of the key's tenant (the routes fill it in); only the
CLI, which reads the database directly as its operator, may search every tenant at once
(``tenant=None``). A bulk operation always has a tenant.

``q`` (``text``) matches a job's id (a whole UUID), its run name (a prefix, so ``20261130``
finds that day's runs), or a case-insensitive substring of its subject or failure reason.
The substring match is a scan of the tenant's rows the other filters leave (``ILIKE``);
no trigram index is made by the migrations (``CREATE EXTENSION pg_trgm`` needs rights a
ledger's role often lacks, and SQLite has no such index): docs/operations.md shows the
three indexes to add by hand when a ledger holds millions of jobs and is searched by text
(one per branch of the ``OR``: with any branch unindexed PostgreSQL scans).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Select, exists, func, or_, select

from app.db import engine
from app.inputs import check_page, utc_moment
from app.ledger import engines
from app.ledger.reads.reports import (
    MAX_LIMIT,
    SUMMARY_COLUMNS,
    Page,
    _counts_by_type,
    _definition_name,
    _dicts,
)
from app.ledger.rules.states import JobStatus, normalize
from models.tables import definitions, events, jobs

Sort = Literal["created", "-created", "finished", "-finished", "duration", "-duration"]
SORTS: tuple[str, ...] = get_args(Sort)
#: Newest first, as every list of jobs has always been.
DEFAULT_SORT: Sort = "-created"
#: The filter names of a search: which jobs, the same in the API, dashboard URLs, CLI
#: options and a bulk operation's form; stated here once, the others read it.
FILTER_NAMES = (
    "q",
    "status",
    "type",
    "queue",
    "definition",
    "worker",
    "created_after",
    "created_before",
    "dead",
)
#: The query parameters of a search and a bulk operation's stored filter: the filter
#: names and the order (``page`` and ``limit`` page through results).
QUERY_NAMES = (*FILTER_NAMES, "sort")
#: Longest ``q`` (a run name, a UUID or a piece of a failure message).
MAX_TEXT = 200


@dataclass(frozen=True)
class JobFilter:
    """Which of a tenant's jobs to show or act on; empty fields do not filter.

    Statuses accept other job systems' words (``Completed``, ``Cancelled``…), mapped by
    :func:`app.ledger.rules.states.normalize`; several of ``statuses``, ``types`` or
    ``queues`` match any of them.
    """

    #: The one tenant searched; None (every tenant) only for the CLI.
    tenant: str | None
    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    #: A definition's name (its runs).
    definition: str | None = None
    #: A worker's node name (``celery@host``), exactly.
    worker: str | None = None
    #: ``q``: id, run name prefix, subject or failure text.
    text: str | None = None
    #: A subject exactly (``GET /subjects/{subject}/jobs``, ``jobledger jobs --subject``).
    subject: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: Only dead jobs: failed with no attempt left (docs/api.md, "Dead jobs").
    dead: bool = False
    sort: Sort = DEFAULT_SORT
    #: Leave out jobs this bulk operation already acted on (a rerun resumes, not repeats):
    #: any job with an event of that operation.
    not_in_operation: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Refuse what would fail later as a 500 or match nothing silently."""
        if self.tenant == "":
            raise ValueError("tenant: empty; give a tenant (or None for every tenant)")
        for status in self.statuses:
            try:
                normalize(status)
            except ValueError as error:
                raise ValueError(f"status: {error}") from None
        if self.sort not in SORTS:
            raise ValueError(f"sort: {self.sort!r} is not one of {', '.join(SORTS)}")
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise ValueError(f"q: at most {MAX_TEXT} characters")

    @classmethod
    def from_query(cls, tenant: str, query: Mapping[str, Any]) -> JobFilter:
        """A filter from query names (``{"status": ["failed"], "q": "timeout"}``): what a
        bulk operation's request body and its stored row hold.

        Raises:
            ValueError: an unknown name or a bad value, the message naming it.
        """
        unknown = sorted(set(query) - set(QUERY_NAMES))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown filter; use {', '.join(QUERY_NAMES)}")
        return cls(
            tenant=tenant,
            statuses=_words(query.get("status")),
            types=_words(query.get("type")),
            queues=_words(query.get("queue")),
            definition=query.get("definition") or None,
            worker=query.get("worker") or None,
            text=(query.get("q") or "").strip() or None,
            created_after=_moment("created_after", query.get("created_after")),
            created_before=_moment("created_before", query.get("created_before")),
            dead=bool(query.get("dead") or False),
            sort=query.get("sort") or DEFAULT_SORT,
        )

    def as_query(self) -> dict[str, Any]:
        """The filter as query names, without the empty ones (and without the tenant,
        which comes from the key): :meth:`from_query` reads it back."""
        query: dict[str, Any] = {
            "q": self.text,
            "status": list(self.statuses),
            "type": list(self.types),
            "queue": list(self.queues),
            "definition": self.definition,
            "worker": self.worker,
            "created_after": _iso(self.created_after),
            "created_before": _iso(self.created_before),
            "dead": self.dead,
            "sort": None if self.sort == DEFAULT_SORT else self.sort,
        }
        return {name: value for name, value in query.items() if value not in (None, [], False)}


def search(wanted: JobFilter, *, limit: int = 50, page: int = 1) -> Page:
    """One page of the jobs ``wanted`` matches, in its sort order (ties: newest first).

    Raises:
        ValueError: a limit or page out of range.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: between 1 and {MAX_LIMIT}, got {limit}")
    check_page(page)
    columns = (*(jobs.c[name] for name in SUMMARY_COLUMNS), jobs.c.queue, jobs.c.operation_id)
    query = (
        filtered(select(*columns, duration().label("duration"), _definition_name()), wanted)
        .order_by(*order(wanted.sort))
        .limit(limit + 1)
        .offset((page - 1) * limit)
    )
    with engine().connect() as connection:
        rows = _dicts(connection.execute(query))
    return Page(items=rows[:limit], page=page, limit=limit, has_more=len(rows) > limit)


def count(wanted: JobFilter) -> int:
    """How many jobs ``wanted`` matches (every page together).

    A filter of statuses, types and a start time only is answered from the status
    counts (:mod:`app.ledger.reads.counts`: exact, and fast at tens of millions of jobs);
    any other filter counts rows.
    """
    if _by_counts(wanted):
        by_type = _counts_by_type(wanted.tenant, wanted.created_after)
        statuses = {normalize(s).value for s in wanted.statuses}
        return sum(
            jobs_in_status
            for job_type, in_status in by_type.items()
            if not wanted.types or job_type in wanted.types
            for status, jobs_in_status in in_status.items()
            if not statuses or status in statuses
        )
    query = filtered(select(func.count()).select_from(jobs), wanted)
    with engine().connect() as connection:
        return int(connection.execute(query).scalar_one())


def _by_counts(wanted: JobFilter) -> bool:
    """Whether the status counts answer :func:`count` for ``wanted``."""
    return not any(
        (
            wanted.queues,
            wanted.definition,
            wanted.worker,
            wanted.text,
            wanted.subject,
            wanted.created_before,
            wanted.dead,
            wanted.not_in_operation is not None,
        )
    )


def filtered(query: Select[Any], wanted: JobFilter) -> Select[Any]:
    """``query`` narrowed to the jobs ``wanted`` matches (bulk operations select with it)."""
    return query.where(*conditions(wanted))


def conditions(wanted: JobFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a filter; the tenant's first."""
    where: list[ColumnElement[bool]] = []
    if wanted.tenant is not None:
        where.append(jobs.c.tenant == wanted.tenant)
    if wanted.statuses:
        where.append(jobs.c.status.in_(sorted({normalize(s).value for s in wanted.statuses})))
    if wanted.types:
        where.append(jobs.c.type.in_(wanted.types))
    if wanted.queues:
        where.append(jobs.c.queue.in_(wanted.queues))
    if wanted.definition:
        where.append(
            jobs.c.definition_id.in_(
                select(definitions.c.id).where(
                    definitions.c.name == wanted.definition,
                    *([] if wanted.tenant is None else [definitions.c.tenant == wanted.tenant]),
                )
            )
        )
    if wanted.worker:
        where.append(jobs.c.worker == wanted.worker)
    if wanted.text:
        where.append(_text_matches(wanted.text))
    if wanted.subject:
        where.append(jobs.c.subject == wanted.subject)
    if wanted.created_after is not None:
        where.append(jobs.c.created_at >= wanted.created_after)
    if wanted.created_before is not None:
        where.append(jobs.c.created_at < wanted.created_before)
    if wanted.dead:
        where.append(dead())
    if wanted.not_in_operation is not None:
        # by the events (written in the job's own transition), not jobs.operation_id
        # (linked after each batch): a run that died mid-batch left its acted-on jobs
        # unlinked, and a resumed run must still leave them out
        acted = select(events.c.id).where(
            events.c.job_id == jobs.c.id, events.c.operation_id == wanted.not_in_operation
        )
        where.append(~exists(acted))
    return where


def dead() -> ColumnElement[bool]:
    """Dead jobs: failed after their retry policy's last attempt (``jobs.retries_exhausted``,
    :mod:`app.ledger.rules.retries`): the rows of the ``dead_jobs`` view. A job that
    failed at once (no policy, or an error its policy does not retry) is failed, not
    dead; a manual retry clears the mark."""
    return (jobs.c.status == JobStatus.FAILED.value) & jobs.c.retries_exhausted


def duration() -> ColumnElement[Any]:
    """A finished job's run time in seconds (None until it has started and finished)."""
    return engines.current().seconds_between(jobs.c.completed_at, jobs.c.started_at)


def order(sort: Sort) -> list[Any]:
    """ORDER BY of a sort name; unfinished jobs (no finish time, no duration) last."""
    key = {
        "created": jobs.c.created_at,
        "finished": jobs.c.completed_at,
        "duration": duration(),
    }[sort.lstrip("-")]
    descending = sort.startswith("-")
    first = key.desc() if descending else key.asc()
    # NULLS LAST on both databases (SQLite sorts NULL first ascending by default)
    return [key.is_(None), first, jobs.c.created_at.desc(), jobs.c.id.desc()]


# -- internals ---------------------------------------------------------------------------


def _text_matches(text: str) -> ColumnElement[bool]:
    """``q``: a whole id, a run name prefix, or a piece of the subject or failure reason."""
    pattern = "%" + _escaped(text) + "%"
    matches: list[ColumnElement[bool]] = [
        jobs.c.name.like(_escaped(text) + "%", escape="\\"),
        jobs.c.subject.ilike(pattern, escape="\\"),
        jobs.c.failure_reason.ilike(pattern, escape="\\"),
    ]
    with contextlib.suppress(ValueError):  # not a whole UUID: the other matches only
        matches.insert(0, jobs.c.id == uuid.UUID(text))
    return or_(*matches)


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _words(value: Any) -> tuple[str, ...]:
    """Repeated and comma-separated values (``["failed,canceled", "queued"]``) as a tuple."""
    if value is None:
        return ()
    items: Sequence[Any] = [value] if isinstance(value, str) else value
    return tuple(word.strip() for item in items for word in str(item).split(",") if word.strip())


def _moment(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return utc_moment(moment)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
