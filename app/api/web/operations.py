"""Bulk operations from the console: cancel or retry every job of the current view.

The operator filters the job list, opens "Bulk action", picks the action and names the
operation. Two steps, both ``POST`` forms with the session's CSRF token, from a key that
may act (:func:`app.api.web.actions.acting_viewer`):

1. **dry run** (no ``confirm`` field): the page shows how many jobs the operation would
   act on now (:func:`app.ledger.operations.bulk.preview`), the filter in words and a
   "Confirm" button; nothing is written;
2. **confirm**: the operation is recorded and acted on after the answer (the browser is
   sent to its page at once, which follows ``done`` of ``matched`` live). The same name
   again shows the recorded operation instead of acting twice (idempotent by tenant and
   name, :mod:`app.ledger.operations.bulk`).

``GET /dashboard/operations`` lists the tenant's operations; ``/operations/{id}`` shows
one, and ``/operations/{id}/live`` is the JSON its page polls.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.api.body_guard import FORM_MAX_BYTES
from app.api.jobs import MAX_LIMIT
from app.api.web.actions import acting_viewer
from app.api.web.filters import BadFilter, ListView, pairs_of
from app.api.web.kit import (
    SECURITY_HEADERS,
    Viewer,
    dashboard_url,
    field,
    page,
    refused,
    to_login,
    viewer_of,
)
from app.api.web.search import job_filter
from app.config import settings
from app.exceptions import OperationConflict, OperationNotFound, OperationTooLarge
from app.inputs import MAX_PAGE
from app.ledger.operations import bulk

log = logging.getLogger(__name__)
router = APIRouter()
ACTIONS = ("retry", "cancel")


@router.post("/operations", max_body_size=FORM_MAX_BYTES)
async def create(request: Request) -> Response:
    """The dry run (count, then a confirm button), or, confirmed, the operation itself."""
    checked = await acting_viewer(request)
    if isinstance(checked, Response):
        return checked
    viewer, form = checked
    action, name = field(form, "action"), field(form, "name")
    try:
        view = ListView.read(pairs_of(form), max_limit=MAX_LIMIT, max_page=MAX_PAGE)
        wanted = job_filter(view, viewer.identity.tenant)
    except (BadFilter, ValueError) as error:
        return refused(request, viewer, "Bad filter", str(error), 422)
    if action not in ACTIONS or not name:
        return refused(request, viewer, "Not done", "choose an action and name the operation", 422)
    if not view.filtered:
        return refused(
            request, viewer, "Not done", "a bulk action applies to a filtered view only", 422
        )
    if field(form, "confirm") != "yes":
        matched = await run_in_threadpool(bulk.preview, action, wanted)  # type: ignore[arg-type]
        return page(
            request,
            "operation_preview.html",
            {
                "action": action,
                "name": name,
                "matched": matched,
                "max_jobs": settings().bulk_max_jobs,
                "view": view,
                "filter_pairs": view.filter_pairs(),
                "back": view.link(dashboard_url(request)),
            },
            viewer=viewer,
        )
    try:
        operation, claimed = await run_in_threadpool(
            bulk.start,
            action,  # type: ignore[arg-type]
            wanted,
            name,
            viewer.identity.name,
        )
    except OperationTooLarge as error:
        return refused(request, viewer, "Too many jobs", str(error), 422)
    except OperationConflict as error:
        return refused(request, viewer, "Name taken", str(error), status.HTTP_409_CONFLICT)
    # acted on after the answer: the operation's page follows its progress
    return RedirectResponse(
        f"{dashboard_url(request)}/operations/{operation.id}",
        status_code=status.HTTP_303_SEE_OTHER,
        background=BackgroundTask(_proceed, operation) if claimed else None,
    )


def _proceed(operation: bulk.Operation) -> None:
    try:
        bulk.proceed(operation, via="api")
    except Exception:  # recorded on the operation (status failed, its error); logged here
        log.exception("bulk operation %s stopped", operation.name)


@router.get("/operations")
def operations_page(
    request: Request,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    """The tenant's bulk operations, newest first."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    items, total = bulk.listed(viewer.identity.tenant, limit=50, page=page_number)
    return page(
        request,
        "operations.html",
        {"operations": items, "total": total, "page": page_number},
        viewer=viewer,
    )


@router.get("/operations/{operation_id}")
def operation_page(operation_id: int, request: Request) -> Response:
    """One operation: who, when, the filter, and its progress (live)."""
    viewer = viewer_of(request)
    if viewer is None:
        return to_login(request)
    found = _found(viewer, operation_id)
    if found is None:
        return refused(request, viewer, "No such operation", f"no operation {operation_id}", 404)
    return page(
        request,
        "operation.html",
        {
            "operation": found,
            "filter_link": _filter_link(request, found.filter),
            "filter_words": ", ".join(
                f"{name}={','.join(map(str, value)) if isinstance(value, list) else value}"
                for name, value in found.filter.items()
            ),
        },
        viewer=viewer,
    )


@router.get("/operations/{operation_id}/live")
def operation_live(operation_id: int, request: Request) -> Response:
    """The operation's progress, for its page to follow."""
    viewer = viewer_of(request)
    if viewer is None:
        return JSONResponse({"detail": "log in again"}, status_code=401)
    found = _found(viewer, operation_id)
    if found is None:
        return JSONResponse({"detail": f"no operation {operation_id}"}, status_code=404)
    document = found.as_dict()
    document["finished"] = found.status in {"done", "failed"}
    response = JSONResponse(document)
    response.headers.update(SECURITY_HEADERS)
    return response


def _found(viewer: Viewer, operation_id: int) -> bulk.Operation | None:
    try:
        return bulk.get(viewer.identity.tenant, operation_id)
    except OperationNotFound:
        return None


def _filter_link(request: Request, query: dict[str, Any]) -> str:
    """The job list showing the operation's filter."""
    pairs = [
        (name, str(item))
        for name, value in query.items()
        for item in (value if isinstance(value, list) else [value])
    ]
    view = ListView.read(pairs, max_limit=MAX_LIMIT, max_page=MAX_PAGE)
    return view.link(dashboard_url(request))
