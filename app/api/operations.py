"""The bulk operations API: cancel or retry every job of the caller's tenant that matches
a filter, as one named operation (:mod:`app.ledger.operations.bulk`).

- ``POST /operations`` ``{"action": "cancel"|"retry", "name": "…", "filter": {…},
  "dry_run": false}``: with ``dry_run`` 200 ``{"matched": n, …}`` and nothing written;
  otherwise 202 with the operation, whose jobs are then acted on in the background
  (follow ``GET /operations/{id}``: ``done`` and ``skipped`` of ``matched``). The same
  name, action and filter again answer 200 with the recorded operation
  (``Idempotent-Replayed: true``), acting on nothing twice. Needs an ``operator`` key.
- ``GET /operations``, ``GET /operations/{id}``: the tenant's operations (any key).

The filter's names are the search's (:data:`app.ledger.reads.job_search.QUERY_NAMES`),
as in ``GET /jobs``; the tenant is always the key's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.api.auth import NAME, ApiKey, require_key, role_required
from app.api.parameters import without_nul
from app.api.schemas import ERRORS, OperationDocument, OperationPage, Preview, field_error
from app.config import settings
from app.exceptions import OperationConflict, OperationNotFound, OperationTooLarge
from app.inputs import MAX_PAGE, refuse_unstorable
from app.ledger.operations import bulk
from app.ledger.reads.job_search import MAX_TEXT, JobFilter, Sort

router = APIRouter(tags=["operations"], dependencies=[Depends(without_nul)], responses=ERRORS)
Caller = Annotated[ApiKey, Depends(require_key)]
Operator = Annotated[ApiKey, Depends(role_required("operator"))]
Text = Annotated[str, AfterValidator(refuse_unstorable)]
Words = Text | list[Text]


class OperationFilter(BaseModel):
    """Which jobs: the query names of ``GET /jobs``, each optional (``{}`` is every job
    of the tenant the action can move)."""

    model_config = ConfigDict(extra="forbid")

    q: Text | None = Field(default=None, max_length=MAX_TEXT)
    status: Words | None = None
    type: Words | None = None
    queue: Words | None = None
    definition: Text | None = Field(default=None, max_length=128)
    worker: Text | None = Field(default=None, max_length=256)
    created_after: datetime | None = None
    created_before: datetime | None = None
    dead: bool = False
    sort: Sort | None = None


class CreateOperation(BaseModel):
    """``POST /operations``."""

    model_config = ConfigDict(extra="forbid")

    #: ``cancel`` live jobs or ``retry`` failed and canceled ones.
    action: Literal["cancel", "retry"]
    #: The operation's name, unique in the tenant: the same name again does not act twice.
    name: str = Field(min_length=1, max_length=128, pattern=NAME.pattern)
    filter: OperationFilter = Field(default_factory=OperationFilter)
    #: Count only: how many jobs it would act on now; nothing is recorded.
    dry_run: bool = False


@router.post(
    "/operations",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OperationDocument | Preview,
    responses={200: {"description": "dry run, or the operation recorded before"}},
)
def create_operation(
    body: CreateOperation, caller: Operator, response: Response, background: BackgroundTasks
) -> Any:
    """Dry-run count (200), or record the operation and act on its jobs (202)."""
    wanted = job_filter(caller.tenant, body.filter)
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        return Preview(
            action=body.action,
            name=body.name,
            filter=wanted.as_query(),
            matched=bulk.preview(body.action, wanted),
            max_jobs=settings().bulk_max_jobs,
        )
    try:
        operation, claimed = bulk.start(body.action, wanted, body.name, caller.name)
    except OperationTooLarge as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error("filter", str(error))]
        ) from None
    except OperationConflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, [field_error("name", str(error))]) from None
    if claimed:
        # acted on after the answer: a large operation's client follows its progress
        background.add_task(_proceed, operation)
    else:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/operations/{operation.id}"
    return operation.as_dict()


@router.get("/operations", response_model=OperationPage)
def list_operations(
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Any:
    """The tenant's operations, newest first."""
    items, total = bulk.listed(caller.tenant, limit=limit, page=page)
    return {
        "items": [operation.as_dict() for operation in items],
        "page": page,
        "limit": limit,
        "total": total,
        "has_more": page * limit < total,
    }


@router.get("/operations/{operation_id}", response_model=OperationDocument)
def get_operation(operation_id: int, caller: Caller) -> Any:
    """One operation of the tenant: its filter, who ran it, ``done``/``skipped`` of
    ``matched``, ``status`` (``running``, ``done``, ``failed``)."""
    try:
        return bulk.get(caller.tenant, operation_id).as_dict()
    except OperationNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


def job_filter(tenant: str, given: OperationFilter) -> JobFilter:
    """The search filter of a request's ``filter``: 422 naming ``filter.<name>`` when a
    value is refused (an unknown status word…)."""
    try:
        return JobFilter.from_query(tenant, given.model_dump(exclude_none=True))
    except ValueError as error:
        name, _, problem = str(error).partition(": ")
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error(f"filter.{name}", problem)]
        ) from None


def _proceed(operation: bulk.Operation) -> None:
    try:
        bulk.proceed(operation, via="api")
    except Exception:  # recorded on the operation (status failed, error); logged here
        import logging

        logging.getLogger(__name__).exception("bulk operation %s stopped", operation.name)
