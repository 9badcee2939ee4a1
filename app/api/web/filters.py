"""The job list's view as a URL: every filter, the sort and the page in the query string.

An operator shares a view by sharing its address, so the console keeps no filter state of
its own: :class:`ListView` is read from the query string (the same parameter names as the
API and the CLI: ``q``, ``status`` (repeatable), ``type`` (repeatable), ``queue``,
``definition``, ``worker``, ``created_after``, ``created_before``, ``dead``, ``sort``,
``page``, ``limit``) and written back by :meth:`ListView.link`. A bulk operation's form
carries the same fields, so "every job of this view" means exactly what the list shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from app.ledger.reads import job_search
from app.ledger.rules.states import normalize

#: The sorts the list offers, as the query names them ("-" = descending).
SORTS = job_search.SORTS
DEFAULT_SORT = job_search.DEFAULT_SORT
DEFAULT_LIMIT = 50
#: The filter fields of a view (what a bulk operation's filter holds): the search's own
#: (:data:`app.ledger.reads.job_search.FILTER_NAMES`).
FILTER_FIELDS = job_search.FILTER_NAMES


class BadFilter(ValueError):
    """A filter value the console cannot read; the message names the field."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class ListView:
    """What the job list shows: its filters, sort and page."""

    q: str = ""
    status: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    queue: str = ""
    definition: str = ""
    worker: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    dead: bool = False
    sort: str = DEFAULT_SORT
    page: int = 1
    limit: int = DEFAULT_LIMIT

    @classmethod
    def read(cls, pairs: Iterable[tuple[str, str]], *, max_limit: int, max_page: int) -> ListView:
        """The view a query string (or a form) names; an empty value does not filter.

        Raises:
            BadFilter: a value that is not valid for its field (named).
        """
        values: dict[str, list[str]] = {}
        for name, value in pairs:
            if value.strip():
                values.setdefault(name, []).append(value.strip())

        def one(name: str) -> str:
            return (values.get(name) or [""])[0]

        statuses: list[str] = []
        for word in (w for value in values.get("status", []) for w in value.split(",")):
            if not word.strip():
                continue
            try:
                statuses.append(normalize(word.strip()).value)
            except ValueError as error:
                raise BadFilter("status", str(error)) from None
        sort = one("sort") or DEFAULT_SORT
        if sort not in SORTS:
            raise BadFilter("sort", f"one of {', '.join(SORTS)}")
        return cls(
            q=one("q"),
            status=tuple(dict.fromkeys(statuses)),
            type=tuple(dict.fromkeys(values.get("type", []))),
            queue=one("queue"),
            definition=one("definition"),
            worker=one("worker"),
            created_after=_moment("created_after", one("created_after")),
            created_before=_moment("created_before", one("created_before")),
            dead=one("dead").lower() in {"true", "1", "yes", "on"},
            sort=sort,
            page=_number("page", one("page"), 1, max_page),
            limit=_number("limit", one("limit"), DEFAULT_LIMIT, max_limit),
        )

    def query(self) -> list[tuple[str, str]]:
        """The view as query pairs, defaults left out (the shortest shareable URL)."""
        pairs: list[tuple[str, str]] = []
        if self.q:
            pairs.append(("q", self.q))
        pairs += [("status", s) for s in self.status]
        pairs += [("type", t) for t in self.type]
        for name in ("queue", "definition", "worker"):
            if getattr(self, name):
                pairs.append((name, getattr(self, name)))
        for name in ("created_after", "created_before"):
            moment = getattr(self, name)
            if moment is not None:
                pairs.append((name, moment.strftime("%Y-%m-%dT%H:%M")))
        if self.dead:
            pairs.append(("dead", "true"))
        if self.sort != DEFAULT_SORT:
            pairs.append(("sort", self.sort))
        if self.page != 1:
            pairs.append(("page", str(self.page)))
        if self.limit != DEFAULT_LIMIT:
            pairs.append(("limit", str(self.limit)))
        return pairs

    def filter_pairs(self) -> list[tuple[str, str]]:
        """Only the filter fields as query pairs (the hidden fields of a bulk form)."""
        return [(name, value) for name, value in self.query() if name in FILTER_FIELDS]

    def link(self, base: str, **changes: Any) -> str:
        """``base`` with this view's query, some fields changed (a tab, a page)."""
        changed = replace(self, **changes)
        query = changed.query()
        return base + ("?" + urlencode(query) if query else "")

    def filter_document(self) -> dict[str, Any]:
        """The view's filter as the API's ``POST /operations`` body names it."""
        document: dict[str, Any] = {}
        for name in FILTER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = value.isoformat()
            if isinstance(value, tuple):
                value = list(value)
            if value:
                document[name] = value
        return document

    @property
    def filtered(self) -> bool:
        """Whether any filter narrows the list (a bulk operation needs one)."""
        return bool(self.filter_document())


def _moment(name: str, text: str) -> datetime | None:
    """A time from a date-time input (``2026-11-30T14:05``) or ISO 8601; UTC when no zone."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(name, "a date and time like 2026-11-30T14:05 (UTC)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(name: str, text: str, default: int, largest: int) -> int:
    if not text:
        return default
    try:
        number = int(text)
    except ValueError:
        raise BadFilter(name, "a whole number") from None
    if not 1 <= number <= largest:
        raise BadFilter(name, f"between 1 and {largest}")
    return number


def pairs_of(form: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """A parsed form's fields as query pairs (for :meth:`ListView.read`)."""
    return [(name, value) for name, values in form.items() for value in values]
