"""The console: server-rendered pages of the caller's tenant, live without reloading.

- ``/dashboard``: jobs with a tab per status and its count, progress bars, search and
  filters (all in the URL, :mod:`app.api.web.filters`), cancel and retry per job and bulk
  operations over the view for operators;
- ``/dashboard/jobs/{id or run name}``: a job's fields, steps as a timeline, events, item
  errors as a paged table, log lines tailed live, files;
- ``/dashboard/charts``, ``/dashboard/workers``, ``/dashboard/operations``: trends,
  workers and queues, bulk operations (their own modules under :mod:`app.api.web`);
- ``/dashboard/definitions`` and ``/dashboard/definitions/{name}``: definitions and runs.

Who is looking: the same tenant-scoped API keys as the JSON API. A browser cannot send a
header by itself, so ``/dashboard/login`` takes the key in a form and opens a server-side
session (:mod:`app.api.sessions`): the cookie holds a random session token, never the
key; it is ``HttpOnly``, ``SameSite=Lax``, limited to ``/dashboard`` (``Secure`` over
HTTPS) and ends at logout (a ``POST`` with the session's CSRF token; a ``GET`` does
nothing), at expiry, or when its key leaves ``JOBLEDGER_API_KEYS``. Logins are limited
per client address (:mod:`app.api.login_limiter`). Scripts may send the key as a header
instead. The cookie counts for the console only, never for the JSON API; every ``POST``
of the console checks the session's CSRF token (:mod:`app.api.web.kit`).

Everything shown is escaped (Jinja2 autoescape; the console's script writes text, never
HTML), and the Content-Security-Policy allows the console's own script file and nothing
inline, so a job's log line or failure reason can never run in an operator's browser.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app import queues
from app.api import files, sessions
from app.api.auth import digest_of, identify
from app.api.body_guard import FORM_MAX_BYTES
from app.api.jobs import MAX_LIMIT, own_job
from app.api.login_limiter import LoginLimiter
from app.api.parameters import without_nul
from app.api.schemas import field_error
from app.api.web import actions, assets, charts, fleet, live, operations, search
from app.api.web.filters import BadFilter, ListView
from app.api.web.kit import (
    Viewer,
    dashboard_url,
    field,
    keyring_of,
    page,
    parse_form,
    refused,
    to_login,
    viewer_of,
)
from app.config import settings
from app.exceptions import InvalidJobId, JobNotFound
from app.inputs import MAX_PAGE
from app.ledger import definitions
from app.ledger.reads import definitions as definition_reads
from app.ledger.reads import reports
from app.ledger.rules.states import LIVE, JobStatus

router = APIRouter(
    prefix="/dashboard", include_in_schema=False, dependencies=[Depends(without_nul)]
)
for part in (assets, live, actions, operations, charts, fleet):
    router.include_router(part.router)

STATUSES = [s.value for s in JobStatus]
LIVE_STATUSES = frozenset(s.value for s in LIVE)
#: Item errors per page of a job's table.
ERRORS_PER_PAGE = 50


# -- log in and out ----------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    """The form that asks for an API key."""
    return page(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse, max_body_size=FORM_MAX_BYTES)
async def login(request: Request) -> Response:
    """Check the key and open a session; the cookie holds the session's token (the form
    is parsed by hand: one field does not justify a multipart dependency)."""
    limiter: LoginLimiter = request.app.state.login_limiter
    wait = limiter.wait_before(request.client.host if request.client else "unknown")
    if wait > 0:
        retry_after = str(math.ceil(wait))
        refused = page(
            request,
            "login.html",
            {"error": f"too many login attempts: try again in {retry_after} s"},
            status.HTTP_429_TOO_MANY_REQUESTS,
        )
        refused.headers["Retry-After"] = retry_after
        return refused
    origin = request.headers.get("origin")
    if origin is not None and origin != _origin(request):
        # Another site posting a key of its own (login CSRF): refuse.
        return page(request, "login.html", {"error": "cross-site login refused"}, 403)
    key = field(parse_form(await request.body()), "key")
    identity = identify(request, key)
    if identity is None:
        return page(request, "login.html", {"error": "that key is not valid"}, 401)
    # the ledger is written from the thread pool: a blocking call would hold the event loop
    session = await run_in_threadpool(
        sessions.open_session, digest_of(key), identity, settings().dashboard_session_seconds
    )
    response = RedirectResponse(dashboard_url(request), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        sessions.COOKIE,
        session.token,
        max_age=settings().dashboard_session_seconds,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=dashboard_url(request),
    )
    return response


@router.post("/logout", max_body_size=FORM_MAX_BYTES)
async def logout(request: Request) -> Response:
    """End the session: revoked in the ledger, so a copy of the cookie opens nothing.
    Only with the session's CSRF token (another site cannot log an operator out)."""
    session = await run_in_threadpool(
        sessions.session_of, request.cookies.get(sessions.COOKIE), keyring_of(request)
    )
    if session is not None:
        presented = field(parse_form(await request.body()), "csrf")
        if not sessions.csrf_matches(session, presented):
            return refused(
                request,
                Viewer(session.identity, session.csrf),
                "Logout refused",
                "the form was not this session's (CSRF): log out from a page of the dashboard",
                status.HTTP_403_FORBIDDEN,
            )
        await run_in_threadpool(sessions.revoke, session)
    response = RedirectResponse(
        dashboard_url(request) + "/login", status_code=status.HTTP_303_SEE_OTHER
    )
    response.delete_cookie(sessions.COOKIE, path=dashboard_url(request))
    return response


# -- pages -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def jobs_page(request: Request) -> Response:
    """Jobs of the tenant: status tabs with counts, search and filters, progress bars,
    actions for operators."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    try:
        view = ListView.read(
            request.query_params.multi_items(), max_limit=MAX_LIMIT, max_page=MAX_PAGE
        )
    except BadFilter as error:
        # the same answer as any other bad parameter of the API: 422 naming it
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error(error.name, error.problem)]
        ) from None
    tenant = viewer.identity.tenant
    try:
        found = search.search(view, tenant)
    except ValueError as error:  # a value the search refuses ("q: at most 200 characters")
        name, _, problem = str(error).partition(": ")
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error(name, problem)]
        ) from None
    total = search.count(view, tenant)
    counts = reports.status_totals(tenant=tenant)
    base = dashboard_url(request)

    def link(**changes: Any) -> str:
        return view.link(base, **changes)

    return page(
        request,
        "jobs.html",
        {
            "view": view,
            "jobs": found.items,
            "total": total,
            "pages": max(1, math.ceil(total / view.limit)),
            "has_more": found.has_more,
            "types": sorted(counts["by_type"]),
            "counts": counts["by_status"],
            "all_count": counts["total"],
            "statuses": STATUSES,
            "live_statuses": LIVE_STATUSES,
            "link": link,
            "sorts": search.SORT_LABELS,
            "filter_pairs": view.filter_pairs(),
            "notice": actions.NOTICES.get(request.query_params.get("done", "")),
            # suggestions for the filter fields (a datalist each)
            "queue_names": queues.queue_names(),
            "definition_names": [d.name for d in definitions.list_(tenant)],
        },
        viewer=viewer,
    )


@router.get("/jobs/{ref}", response_class=HTMLResponse)
def job_page(
    ref: str,
    request: Request,
    errors_page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    done: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """One job: its fields, steps, events, item errors, log lines and files."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    try:
        detail = own_job(ref, viewer.identity, log_limit=1000)
    except (InvalidJobId, JobNotFound) as error:
        code = 400 if isinstance(error, InvalidJobId) else 404
        return page(request, "missing.html", {"message": str(error)}, code, viewer=viewer)
    job = detail.job
    errors = list(job.get("errors") or [])
    error_pages = max(1, math.ceil(len(errors) / ERRORS_PER_PAGE))
    errors_page = min(errors_page, error_pages)
    shown_errors = errors[(errors_page - 1) * ERRORS_PER_PAGE : errors_page * ERRORS_PER_PAGE]
    base = f"{dashboard_url(request)}/jobs/{job['id']}"
    return page(
        request,
        "job.html",
        {
            "job": job,
            "summary": live.summary(job),
            "steps": detail.steps,
            "events": detail.events,
            "logs": detail.logs,
            "cursor": detail.logs[-1]["id"] if detail.logs else 0,
            "files": detail.files,
            "positions": {step["id"]: step["position"] for step in detail.steps},
            "documents": _documents(job),
            "live": job["status"] in LIVE_STATUSES,
            "retryable": job["status"] in {"failed", "canceled"} and not detail.steps,
            "item_errors": [_error_row(error) for error in shown_errors],
            "error_count": len(errors),
            "errors_page": errors_page,
            "error_pages": error_pages,
            "errors_link": lambda number: f"{base}?errors_page={number}#item-errors",
            "notice": actions.NOTICES.get(done or ""),
        },
        viewer=viewer,
    )


@router.get("/jobs/{ref}/files/{file_id}")
def job_file(ref: str, file_id: int, request: Request) -> Response:
    """A file the job recorded, for the browser: the API's download
    (:func:`app.api.files.download_file`: tenant-scoped, path-contained) with the
    session's key, since a browser cannot send the key's header."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    return files.download_file(ref, file_id, viewer.identity)


@router.get("/definitions", response_class=HTMLResponse)
def definitions_page(
    request: Request,
    include_archived: Annotated[bool, Query(alias="archived")] = False,
) -> Response:
    """The tenant's definitions: schedule in words, next run, last status."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    found = definitions.list_(viewer.identity.tenant, include_archived=include_archived)
    return page(
        request,
        "definitions.html",
        {
            "definitions": [
                {**document, "next_run": definition.next_run_at}
                for document, definition in zip(
                    definition_reads.documents(found), found, strict=True
                )
            ],
            "include_archived": include_archived,
        },
        viewer=viewer,
    )


@router.get("/definitions/{name}", response_class=HTMLResponse)
def definition_page(
    name: str,
    request: Request,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> Response:
    """One definition: its fields, payload, and its runs, newest first."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    found = definitions.get(viewer.identity.tenant, name)
    if found is None:
        return refused(request, viewer, "No such definition", f"no definition named {name!r}", 404)
    filters = reports.JobFilter(tenant=viewer.identity.tenant, definition_id=found.id)
    runs = reports.list_jobs(filters, limit=limit, page=page_number)
    total = reports.count_jobs(filters)
    base = f"{dashboard_url(request)}/definitions/{quote(found.name, safe='')}"

    def link(**changes: Any) -> str:
        wanted = {"page": page_number, "limit": limit, **changes}
        query = {k: v for k, v in wanted.items() if v != {"page": 1, "limit": 50}.get(k)}
        return base + ("?" + urlencode(query) if query else "")

    document = {**definition_reads.documents([found])[0], "next_run": found.next_run_at}
    return page(
        request,
        "definition.html",
        {
            "definition": document,
            "payload": json.dumps(document["payload"], indent=2, sort_keys=True),
            "options": json.dumps(document["options"], indent=2, sort_keys=True),
            "jobs": runs.items,
            "total": total,
            "page": page_number,
            "pages": max(1, math.ceil(total / limit)),
            "has_more": runs.has_more,
            "link": link,
            "live_statuses": LIVE_STATUSES,
        },
        viewer=viewer,
    )


# -- helpers -----------------------------------------------------------------------------


def _documents(job: dict[str, Any]) -> list[tuple[str, Any]]:
    """The job's JSON documents worth showing, as pretty text (item errors have their
    own table)."""
    shown = []
    for name in ("result", "payload", "metadata"):
        value = job.get(name)
        if value:
            shown.append((name, json.dumps(reports.jsonable(value), indent=2, sort_keys=True)))
    return shown


def _error_row(error: Any) -> dict[str, str]:
    """An item error as a table row: row, field, message, and any other keys as text."""
    if not isinstance(error, dict):
        return {"row": "", "field": "", "message": str(error), "more": ""}
    more = {k: v for k, v in error.items() if k not in {"row", "field", "message"}}
    return {
        "row": "" if error.get("row") is None else str(error["row"]),
        "field": "" if error.get("field") is None else str(error["field"]),
        "message": str(error.get("message", "")),
        "more": json.dumps(reports.jsonable(more), sort_keys=True) if more else "",
    }


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
