"""The job list's reads: a :class:`~app.api.web.filters.ListView` turned into the
ledger's job search (:mod:`app.ledger.reads.job_search`, the same search as the API's
``GET /jobs``, the CLI's ``jobledger jobs`` and a bulk operation's filter)."""

from __future__ import annotations

from app.api.web.filters import ListView
from app.ledger.reads import job_search, reports

#: The sorts the list offers, with their labels.
SORT_LABELS = {
    "-created": "newest first",
    "created": "oldest first",
    "-finished": "finished last first",
    "finished": "finished first",
    "-duration": "longest first",
    "duration": "shortest first",
}


def job_filter(view: ListView, tenant: str) -> job_search.JobFilter:
    """The search the view names, in ``tenant``.

    Raises:
        ValueError: a value the search refuses, the message naming the field.
    """
    query = view.filter_document()
    if view.sort != job_search.DEFAULT_SORT:
        query["sort"] = view.sort
    return job_search.JobFilter.from_query(tenant, query)


def search(view: ListView, tenant: str) -> reports.Page:
    """The page of jobs the view shows."""
    return job_search.search(job_filter(view, tenant), limit=view.limit, page=view.page)


def count(view: ListView, tenant: str) -> int:
    """How many jobs the view matches (every page)."""
    return job_search.count(job_filter(view, tenant))
