"""What an operator does from the console: cancel and retry a job.

Each action is a ``POST`` form carrying the session's CSRF token (checked first: a form
posted from another site is refused with 403 and changes nothing), from a key whose role
may act (a viewer's ``POST`` is refused with 403 too, whatever the page showed). The
action itself is the ledger's (:mod:`app.ledger.operations.actions`), exactly as the API
and the CLI run it, with actor ``api`` and the key's name on every event it writes.
After the action the browser is sent back (303) to the page it came from, with a notice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.api.auth import forbidden
from app.api.body_guard import FORM_MAX_BYTES
from app.api.jobs import own_job
from app.api.web.kit import (
    Viewer,
    csrf_refused,
    dashboard_url,
    field,
    parse_form,
    refused,
    to_login,
    viewer_of,
)
from app.exceptions import InvalidJobId, JobNotFound, PayloadNotKept, TransitionRefused
from app.ledger.operations import actions as operations
from app.ledger.rules.attribution import attributed

router = APIRouter()

#: What the page says after an action (``?done=`` names one of these).
NOTICES = {
    "canceled": "Canceled: the job will not run.",
    "requested": "Cancel requested: the job stops at its next checkpoint.",
    "already_requested": "A cancel was requested already: the job stops at its next checkpoint.",
    "retried": "Queued again: the job runs once a worker takes it.",
}


async def acting_viewer(request: Request) -> tuple[Viewer, dict[str, list[str]]] | Response:
    """The viewer and their form, or the answer that refuses them: no session (to the
    login page), a form without this session's CSRF token (403), a role that may not
    act (403)."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return to_login(request)
    form = parse_form(await request.body())
    if csrf_refused(viewer, form):
        return refused(
            request,
            viewer,
            "Action refused",
            "the form was not this session's (CSRF token missing or wrong): "
            "act from a page of the console",
            status.HTTP_403_FORBIDDEN,
        )
    if not viewer.may_act:
        return refused(
            request,
            viewer,
            "Action refused",
            forbidden(viewer.identity, "operator", f"{request.method} {request.url.path}"),
            status.HTTP_403_FORBIDDEN,
        )
    return viewer, form


#: A job action: (who, their form, the job's id) -> the outcome word of :data:`NOTICES`.
JobAction = Callable[[Viewer, dict[str, list[str]], uuid.UUID], str]


@router.post("/jobs/{ref}/cancel", max_body_size=FORM_MAX_BYTES)
async def cancel(ref: str, request: Request) -> Response:
    """Cancel the job (a reason may come with the form)."""

    def work(viewer: Viewer, form: dict[str, list[str]], job_id: uuid.UUID) -> str:
        reason = field(form, "reason")[:500] or f"canceled by {viewer.identity.name}"
        return str(operations.cancel(job_id, actor="api", reason=reason).outcome)

    return await _on_job(request, ref, work)


@router.post("/jobs/{ref}/retry", max_body_size=FORM_MAX_BYTES)
async def retry(ref: str, request: Request) -> Response:
    """Queue the failed or canceled job again."""

    def work(viewer: Viewer, form: dict[str, list[str]], job_id: uuid.UUID) -> str:
        operations.retry(job_id, actor="api")
        return "retried"

    return await _on_job(request, ref, work)


async def _on_job(request: Request, ref: str, work: JobAction) -> Response:
    """Check who acts, run ``work`` on their tenant's job ``ref`` (in the thread pool: it
    writes the ledger and publishes), and send the browser back with a notice."""
    checked = await acting_viewer(request)
    if isinstance(checked, Response):
        return checked
    viewer, form = checked
    try:
        outcome = await run_in_threadpool(_attributed, viewer, form, ref, work)
    except (InvalidJobId, JobNotFound) as error:
        return refused(request, viewer, "No such job", str(error), status.HTTP_404_NOT_FOUND)
    except (TransitionRefused, PayloadNotKept) as error:
        return refused(request, viewer, "Not done", str(error), status.HTTP_409_CONFLICT)
    back = _back(request, field(form, "back")) or f"{dashboard_url(request)}/jobs/{ref}"
    joiner = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{joiner}done={outcome}", status_code=303)


def _attributed(viewer: Viewer, form: dict[str, list[str]], ref: str, work: JobAction) -> str:
    """``work`` on the tenant's job ``ref``, every event it writes naming the key."""
    with attributed(viewer.identity.name):
        return work(viewer, form, own_job(ref, viewer.identity).job["id"])


def _back(request: Request, wanted: str) -> str | None:
    """Where the form asked to return, if it is a page of this console (never another
    site: ``//evil`` and absolute URLs are refused)."""
    root = dashboard_url(request)
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not wanted.startswith(root) or "\\" in wanted:
        return None
    return wanted
