"""The dashboard: server-rendered, read-only pages of the caller's tenant.

- ``/dashboard``: jobs by status (a tab per status with its count), progress bars,
  filters by status and type in the query string, newest first, paged.
- ``/dashboard/jobs/{id or run name}``: a job's fields, steps, events and log lines.
- ``/dashboard/definitions``: the tenant's definitions, their schedule in words, next
  run and last status; ``/dashboard/definitions/{name}``: one of them with its runs.

Who is looking: the same tenant-scoped API keys as the JSON API. A browser cannot send a
header by itself, so ``/dashboard/login`` takes the key in a form and opens a server-side
session (:mod:`app.api.sessions`): the cookie holds a random session token, never the
key; it is ``HttpOnly``, ``SameSite=Lax``, limited to ``/dashboard`` (``Secure`` over
HTTPS) and ends at logout (a ``POST`` with the session's CSRF token; a ``GET`` does
nothing), at expiry, or when its key leaves ``JOBLEDGER_API_KEYS``. Logins are limited
per client address (:mod:`app.api.login_limiter`). Scripts may send the key as a header
instead. The cookie counts for these read-only pages only, never for the JSON API, whose
``POST`` routes would otherwise be open to cross-site requests. No JavaScript; pages of
live jobs refresh themselves with a ``<meta http-equiv="refresh">``. Everything shown is
escaped (Jinja2 autoescape), and a strict Content-Security-Policy forbids scripts
outright, so a job's log line or failure reason can never run in an operator's browser.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from starlette.concurrency import run_in_threadpool

from app.api import sessions
from app.api.auth import ApiKey, KeyRing, digest_of, identify, presented_key
from app.api.body_guard import FORM_MAX_BYTES
from app.api.jobs import MAX_LIMIT, own_job
from app.api.login_limiter import LoginLimiter
from app.api.parameters import without_nul
from app.config import settings
from app.exceptions import InvalidJobId, JobNotFound
from app.inputs import MAX_PAGE
from app.ledger import definitions
from app.ledger.reads import definitions as definition_reads
from app.ledger.reads import reports
from app.ledger.rules.states import LIVE, JobStatus, normalize

router = APIRouter(
    prefix="/dashboard", include_in_schema=False, dependencies=[Depends(without_nul)]
)

#: No script may run, nothing may frame the pages, forms only post back here.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: Seconds between two reloads of a page that shows live jobs.
REFRESH_SECONDS = 5
STATUSES = [s.value for s in JobStatus]

_environment = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every template, whatever its file name
)
templates = Jinja2Templates(env=_environment)


def _when(value: object) -> str:
    """A ledger time for people: UTC to the second."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _short(value: object) -> str:
    """A ledger time in a list row, where the year is noise: ``MM-DD hh:mm:ss`` UTC."""
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M:%S")
    return "" if value is None else str(value)


_environment.filters["when"] = _when
_environment.filters["short"] = _short


# -- log in and out ----------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    """The form that asks for an API key."""
    return _page(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse, max_body_size=FORM_MAX_BYTES)
async def login(request: Request) -> Response:
    """Check the key and open a session; the cookie holds the session's token (the form
    is parsed by hand: one field does not justify a multipart dependency)."""
    limiter: LoginLimiter = request.app.state.login_limiter
    wait = limiter.wait_before(request.client.host if request.client else "unknown")
    if wait > 0:
        retry_after = str(math.ceil(wait))
        refused = _page(
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
        return _page(request, "login.html", {"error": "cross-site login refused"}, 403)
    key = _form_field(await request.body(), "key")
    identity = identify(request, key)
    if identity is None:
        return _page(request, "login.html", {"error": "that key is not valid"}, 401)
    # the ledger is written from the thread pool: a blocking call would hold the event loop
    session = await run_in_threadpool(
        sessions.open_session, digest_of(key), identity, settings().dashboard_session_seconds
    )
    response = RedirectResponse(_dashboard_url(request), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        sessions.COOKIE,
        session.token,
        max_age=settings().dashboard_session_seconds,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=_dashboard_url(request),
    )
    return response


@router.post("/logout", max_body_size=FORM_MAX_BYTES)
async def logout(request: Request) -> Response:
    """End the session: revoked in the ledger, so a copy of the cookie opens nothing.
    Only with the session's CSRF token (another site cannot log an operator out)."""
    session = await run_in_threadpool(
        sessions.session_of, request.cookies.get(sessions.COOKIE), _keyring(request)
    )
    if session is not None:
        presented = _form_field(await request.body(), "csrf")
        if not sessions.csrf_matches(session, presented):
            return _page(
                request,
                "missing.html",
                {
                    "caller": session.identity,
                    "csrf": session.csrf,
                    "heading": "Logout refused",
                    "message": "the form was not this session's (CSRF): log out from a "
                    "page of the dashboard",
                },
                status.HTTP_403_FORBIDDEN,
            )
        await run_in_threadpool(sessions.revoke, session)
    response = RedirectResponse(
        _dashboard_url(request) + "/login", status_code=status.HTTP_303_SEE_OTHER
    )
    response.delete_cookie(sessions.COOKIE, path=_dashboard_url(request))
    return response


# -- pages -------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def jobs_page(
    request: Request,
    status_: Annotated[str | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=64)] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> Response:
    """Jobs of the tenant by status, with progress bars."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    caller, csrf = viewer
    chosen = _status_or_none(status_)
    filters = reports.JobFilter(
        status=(chosen,) if chosen else (), type=type_ or None, tenant=caller.tenant
    )
    listed = reports.list_jobs(filters, limit=limit, page=page)
    counts = reports.stats(tenant=caller.tenant)
    total = reports.total_of(counts["by_type"], filters)  # one read of the counts, not two
    pages = max(1, math.ceil(total / limit))

    def link(**changes: Any) -> str:
        """This list's URL with some of its query parameters changed."""
        wanted = {"status": chosen, "type": type_, "page": page, "limit": limit, **changes}
        defaults = {"page": 1, "limit": 50}
        query = {k: v for k, v in wanted.items() if v not in (None, "", defaults.get(k))}
        return _dashboard_url(request) + ("?" + urlencode(query) if query else "")

    return _page(
        request,
        "jobs.html",
        {
            "caller": caller,
            "jobs": listed.items,
            "total": total,
            "page": page,
            "pages": pages,
            "has_more": listed.has_more,
            "status": chosen,
            "type": type_ or "",
            "types": sorted(counts["by_type"]),
            "counts": counts["by_status"],
            "all_count": counts["total"],
            "statuses": STATUSES,
            "link": link,
            "refresh": counts["live"] > 0,
            "csrf": csrf,
        },
    )


@router.get("/jobs/{ref}", response_class=HTMLResponse)
def job_page(ref: str, request: Request) -> Response:
    """One job: its fields, steps, events and log lines."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    caller, csrf = viewer
    try:
        detail = own_job(ref, caller, log_limit=1000)
    except (InvalidJobId, JobNotFound) as error:
        code = 400 if isinstance(error, InvalidJobId) else 404
        context = {"caller": caller, "csrf": csrf, "message": str(error)}
        return _page(request, "missing.html", context, code)
    positions = {step["id"]: step["position"] for step in detail.steps}
    return _page(
        request,
        "job.html",
        {
            "caller": caller,
            "job": detail.job,
            "steps": detail.steps,
            "events": detail.events,
            "logs": detail.logs,
            "files": detail.files,
            "positions": positions,
            "documents": _documents(detail.job),
            "refresh": detail.job["status"] in {s.value for s in LIVE},
            "csrf": csrf,
        },
    )


@router.get("/definitions", response_class=HTMLResponse)
def definitions_page(
    request: Request,
    include_archived: Annotated[bool, Query(alias="archived")] = False,
) -> Response:
    """The tenant's definitions: schedule in words, next run, last status."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    caller, csrf = viewer
    found = definitions.list_(caller.tenant, include_archived=include_archived)
    return _page(
        request,
        "definitions.html",
        {
            "caller": caller,
            "definitions": [
                {**document, "next_run": definition.next_run_at}
                for document, definition in zip(
                    definition_reads.documents(found), found, strict=True
                )
            ],
            "include_archived": include_archived,
            "csrf": csrf,
        },
    )


@router.get("/definitions/{name}", response_class=HTMLResponse)
def definition_page(
    name: str,
    request: Request,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> Response:
    """One definition: its fields, payload, and its runs, newest first."""
    viewer = _viewer(request)
    if viewer is None:
        return _to_login(request)
    caller, csrf = viewer
    found = definitions.get(caller.tenant, name)
    if found is None:
        context = {
            "caller": caller,
            "csrf": csrf,
            "heading": "No such definition",
            "message": f"no definition named {name!r}",
        }
        return _page(request, "missing.html", context, 404)
    filters = reports.JobFilter(tenant=caller.tenant, definition_id=found.id)
    runs = reports.list_jobs(filters, limit=limit, page=page)
    total = reports.count_jobs(filters)
    base = f"{_dashboard_url(request)}/definitions/{quote(found.name, safe='')}"

    def link(**changes: Any) -> str:
        wanted = {"page": page, "limit": limit, **changes}
        query = {k: v for k, v in wanted.items() if v != {"page": 1, "limit": 50}.get(k)}
        return base + ("?" + urlencode(query) if query else "")

    document = {**definition_reads.documents([found])[0], "next_run": found.next_run_at}
    return _page(
        request,
        "definition.html",
        {
            "caller": caller,
            "definition": document,
            "payload": json.dumps(document["payload"], indent=2, sort_keys=True),
            "options": json.dumps(document["options"], indent=2, sort_keys=True),
            "jobs": runs.items,
            "total": total,
            "page": page,
            "pages": max(1, math.ceil(total / limit)),
            "has_more": runs.has_more,
            "link": link,
            "refresh": any(job["status"] in {s.value for s in LIVE} for job in runs.items),
            "csrf": csrf,
        },
    )


# -- helpers -----------------------------------------------------------------------------


def _viewer(request: Request) -> tuple[ApiKey, str | None] | None:
    """Who looks, and the CSRF token of their session: a key in a header (scripts; no
    session, no token) or the session cookie (browsers)."""
    presented = presented_key(request)
    if presented is not None:
        identity = identify(request, presented)
        return None if identity is None else (identity, None)
    session = sessions.session_of(request.cookies.get(sessions.COOKIE), _keyring(request))
    return None if session is None else (session.identity, session.csrf)


def _keyring(request: Request) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    return keyring


def _form_field(body: bytes, name: str) -> str:
    """One field of a urlencoded form body, stripped ("" when absent)."""
    form = parse_qs(body.decode("utf-8", errors="replace"))
    return (form.get(name) or [""])[0].strip()


def _to_login(request: Request) -> Response:
    return RedirectResponse(
        _dashboard_url(request) + "/login", status_code=status.HTTP_303_SEE_OTHER
    )


def _page(
    request: Request, template: str, context: dict[str, Any], code: int = 200
) -> HTMLResponse:
    context = {"root": _dashboard_url(request), "refresh_seconds": REFRESH_SECONDS, **context}
    response = templates.TemplateResponse(request, template, context, status_code=code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _documents(job: dict[str, Any]) -> list[tuple[str, Any]]:
    """The job's JSON documents worth showing, as pretty text."""
    shown = []
    for name in ("result", "errors", "payload", "metadata"):
        value = job.get(name)
        if value:
            shown.append((name, json.dumps(reports.jsonable(value), indent=2, sort_keys=True)))
    return shown


def _status_or_none(word: str | None) -> str | None:
    """A status filter from the query string; an unknown word shows every status."""
    if not word:
        return None
    try:
        return normalize(word).value
    except ValueError:
        return None


def _dashboard_url(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/dashboard"


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
