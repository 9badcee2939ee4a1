"""What the console's pages poll to update in place, without reloading.

Small JSON documents (a page's script asks every two seconds while the tab is visible;
see ``app/api/static/console.js``):

- ``GET /dashboard/live?id=…&id=…``: the tenant's counts per status and the status and
  progress of the listed jobs;
- ``GET /dashboard/jobs/{ref}/live?after=N``: one job's status, progress and summary, its
  steps, and its log lines after line ``N`` (a cursor: only new lines travel).

Polling rather than server-sent events: every API process answers it without holding a
connection (and a database session) open per browser tab, a proxy needs nothing special,
and a tab that misses a poll loses nothing, since each answer is the whole state.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.api.web.kit import SECURITY_HEADERS, viewer_of
from app.exceptions import InvalidJobId, JobNotFound
from app.ledger.reads import console, reports
from app.ledger.reads.tenant_jobs import tenant_job
from app.ledger.rules.states import LIVE

router = APIRouter()

#: Most jobs one list poll asks about (a page shows at most 200).
MAX_IDS = 200
LIVE_STATUSES = frozenset(s.value for s in LIVE)
#: What a job's page polls of the job itself (:func:`summary` reads the last four).
LIVE_COLUMNS = (
    "id",
    "status",
    "progress",
    "attempts",
    "started_at",
    "completed_at",
    "progress_message",
    "failure_reason",
    "errors",
)


def summary(job: dict[str, Any]) -> str:
    """The line under a job's progress bar, consistent with how it ended: a partial job
    says how many items failed (its last progress message may say "step 3 of 3"), a
    failed one why, a canceled one that it was."""
    status = job["status"]
    message = job.get("progress_message") or ""
    if status == "partial":
        count = len(job.get("errors") or [])
        noun = "item error" if count == 1 else "item errors"
        return f"finished with {count} {noun}" if count else "finished with item errors"
    if status == "failed":
        return f"failed: {job.get('failure_reason') or 'no reason recorded'}"
    if status == "canceled":
        return "canceled"
    if status == "succeeded":
        return message or "done"
    return message


def _json(document: Any, code: int = 200) -> JSONResponse:
    response = JSONResponse(reports.jsonable(document), status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/live")
def list_live(
    request: Request,
    ids: Annotated[list[uuid.UUID] | None, Query(alias="id", max_length=MAX_IDS)] = None,
) -> JSONResponse:
    """Counts per status of the tenant, and the state of the jobs a page shows."""
    viewer = viewer_of(request)
    if viewer is None:
        return _json({"detail": "log in again"}, 401)
    tenant = viewer.identity.tenant
    counts = reports.status_totals(tenant=tenant)
    return _json(
        {
            "counts": counts["by_status"],
            "total": counts["total"],
            "live": counts["live"],
            "jobs": [
                {**row, "live": row["status"] in LIVE_STATUSES}
                for row in console.progress_of(tenant, ids or [])
            ],
        }
    )


@router.get("/jobs/{ref}/live")
def job_live(ref: str, request: Request, after: Annotated[int, Query(ge=0)] = 0) -> JSONResponse:
    """One job as its page shows it, and the log lines after ``after``."""
    viewer = viewer_of(request)
    if viewer is None:
        return _json({"detail": "log in again"}, 401)
    try:
        job = tenant_job(viewer.identity.tenant, ref, LIVE_COLUMNS)
    except InvalidJobId as error:
        return _json({"detail": str(error)}, 404)
    if job is None:  # another tenant's job is not found, exactly as a missing one
        return _json({"detail": str(JobNotFound(ref))}, 404)
    job_id = uuid.UUID(job["id"])
    lines = console.logs_after(job_id, after)
    return _json(
        {
            "id": job["id"],
            "status": job["status"],
            "progress": job["progress"],
            "summary": summary(job),
            "live": job["status"] in LIVE_STATUSES,
            "attempts": job["attempts"],
            "started_at": job["started_at"],
            "completed_at": job["completed_at"],
            "failure_reason": job["failure_reason"],
            "steps": console.steps_of(job_id),
            "logs": lines,
            "cursor": lines[-1]["id"] if lines else after,
        }
    )
