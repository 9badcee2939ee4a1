"""The job list's reads: a :class:`~app.api.web.filters.ListView` turned into the
ledger's job search (:mod:`app.ledger.reads.job_search`, the same search as the API's
``GET /jobs`` and the CLI's ``jobledger jobs``)."""

from __future__ import annotations

from app.api.web.filters import ListView
from app.ledger.reads import reports

#: The sorts the list offers, with their labels.
SORT_LABELS = {
    "-created": "newest first",
    "created": "oldest first",
    "-finished": "finished last first",
    "finished": "finished first",
    "-duration": "longest first",
    "duration": "shortest first",
}


def _filter(view: ListView, tenant: str) -> reports.JobFilter:
    # TEMPORARY until job_search lands: status and the first type only
    return reports.JobFilter(
        status=view.status, type=view.type[0] if view.type else None, tenant=tenant
    )


def search(view: ListView, tenant: str) -> reports.Page:
    """The page of jobs the view shows."""
    return reports.list_jobs(_filter(view, tenant), limit=view.limit, page=view.page)


def count(view: ListView, tenant: str) -> int:
    """How many jobs the view matches (every page)."""
    return reports.count_jobs(_filter(view, tenant))
