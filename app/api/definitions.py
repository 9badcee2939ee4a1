"""The definitions API: named, tenant-scoped definitions of a job, their schedules and runs.

The API never writes the ledger itself: definitions are created and changed through
:mod:`app.ledger.definitions` (the door: validation, one change row per edit, with the
key's name as ``changed_by`` and actor ``api``), and a run by hand goes through its
``run`` (the job type's ``apply_async`` path, trigger ``manual``). Reads of their runs go
through :mod:`app.ledger.reads.reports`, the last run through
:mod:`app.ledger.reads.definitions`.

Tenant rules are the jobs API's: every route is scoped to the key's tenant, and another
tenant's definition is answered exactly like one that does not exist (404). Errors:
422 naming the field (``name``, ``type``, ``payload.<field>``, ``schedule.cron``,
``schedule.timezone``, ``schedule.every``, ``catch_up``, ``options.<field>``), 403 a
payload naming another tenant, 404 no such definition, 409 a duplicate name or a run of
an archived definition. Nothing is written on any error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.api.auth import ApiKey, require_key, role_required
from app.api.jobs import (
    MAX_LIMIT,
    creatable_task,
    creatable_types,
    payload_of_tenant,
    root_of,
    statuses,
)
from app.api.parameters import without_nul
from app.api.schemas import ERRORS, detail_document, field_error, page_document
from app.exceptions import DefinitionArchived, DefinitionExists, InvalidPayload
from app.inputs import MAX_PAGE, refuse_unstorable
from app.ledger import definitions
from app.ledger.definitions import Definition
from app.ledger.reads import definitions as definition_reads
from app.ledger.reads import reports
from app.ledger.rules.attribution import attributed
from app.ledger.runtime.task import JobTask

router = APIRouter(tags=["definitions"], dependencies=[Depends(without_nul)], responses=ERRORS)
Caller = Annotated[ApiKey, Depends(require_key)]
#: Creating and changing definitions (enable, disable, archive…) needs an ``admin`` key.
Admin = Annotated[ApiKey, Depends(role_required("admin"))]
#: Running one by hand makes a job, as ``POST /jobs`` does: an ``operator`` may.
Operator = Annotated[ApiKey, Depends(role_required("operator"))]

#: A definition's name: it is a path segment of its URL.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
#: What a PATCH may change.
CHANGEABLE = ("payload", "schedule", "enabled", "catch_up", "options", "archived")

Text = Annotated[str, AfterValidator(refuse_unstorable)]


class CreateDefinition(BaseModel):
    """``POST /definitions``: a named job of a type, on a payload, maybe on a schedule."""

    model_config = ConfigDict(extra="forbid")

    #: Unique within the tenant; letters, digits and ``_ . : -``.
    name: Text = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    #: A job type the API may create.
    type: Text = Field(min_length=1, max_length=64)
    #: The job type's payload; validated by the job type when saved.
    payload: dict[str, Any] = Field(default_factory=dict)
    #: ``{"cron": "*/5 * * * *", "timezone": "Europe/Paris"}`` or ``{"every": 30}``.
    schedule: dict[str, Any] | None = None
    enabled: bool = True
    #: A firing missed while no beat ran: ``skip`` it, or run ``once`` for all of them.
    catch_up: Literal["skip", "once"] = "skip"
    #: Run options the job type supports (queue, priority, time_limit, soft_time_limit,
    #: retry_policy).
    options: dict[str, Any] = Field(default_factory=dict)


class UpdateDefinition(BaseModel):
    """``PATCH /definitions/{name}``: any of these; ``schedule: null`` unschedules it."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    enabled: bool | None = None
    catch_up: Literal["skip", "once"] | None = None
    options: dict[str, Any] | None = None
    #: true archives it (no more runs, hidden from lists); false brings it back.
    archived: bool | None = None


# -- create and change -------------------------------------------------------------------


@router.post("/definitions", status_code=status.HTTP_201_CREATED)
def create_definition(
    body: CreateDefinition, caller: Admin, request: Request, response: Response
) -> Any:
    """Validate and record a definition; 201 with it (``next_run_at`` when scheduled)."""
    task = creatable_task(body.type)
    if task is None:
        known = ", ".join(creatable_types()) or "none"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [field_error("type", f"unknown job type {body.type!r}; known: {known}")],
        )
    payload = payload_of_tenant(task, body.payload, caller)
    with _answers():
        created = definitions.create(
            tenant=caller.tenant,
            name=body.name,
            type=body.type,
            payload=payload,
            schedule=body.schedule,
            enabled=body.enabled,
            catch_up=body.catch_up,
            options=body.options,
            actor="api",
            changed_by=caller.name,
        )
    response.headers["Location"] = f"{root_of(request)}/definitions/{created.name}"
    return _document(created, request)


@router.patch("/definitions/{name}")
def update_definition(name: str, body: UpdateDefinition, caller: Admin, request: Request) -> Any:
    """Change a definition: one new version, one change row naming the key."""
    current = own_definition(name, caller)
    task = _runnable_task(current)
    changes = body.model_dump(exclude_unset=True)
    for field in ("payload", "enabled", "catch_up", "options", "archived"):
        if field in changes and changes[field] is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                [field_error(field, "may not be null")],
            )
    if not changes:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                field_error(
                    "body",
                    f"give at least one of {', '.join(CHANGEABLE)}",
                )
            ],
        )
    if "payload" in changes:
        changes["payload"] = payload_of_tenant(task, changes["payload"], caller)
    with _answers():
        try:
            updated = definitions.update(
                caller.tenant, current.name, changes, actor="api", changed_by=caller.name
            )
        except LookupError:
            raise _not_found(name) from None
    return _document(updated, request)


# -- run ---------------------------------------------------------------------------------


@router.post("/definitions/{name}/run", status_code=status.HTTP_202_ACCEPTED)
def run_definition(name: str, caller: Operator, request: Request, response: Response) -> Any:
    """Run the definition now (trigger ``manual``): 202 with the job, as ``POST /jobs``."""
    current = own_definition(name, caller)
    if current.archived_at is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"definition {current.name!r} is archived: unarchive it (PATCH archived false) first",
        )
    _runnable_task(current)
    with _answers():
        try:
            with attributed(caller.name):
                job_id = definitions.run(
                    caller.tenant,
                    current.name,
                    scheduled_for=None,
                    trigger="manual",
                    created_by=caller.name,
                )
        except LookupError:
            raise _not_found(name) from None
    if job_id is None:  # cannot happen for a run by hand (no scheduled time to collide on)
        raise HTTPException(status.HTTP_409_CONFLICT, "this run already has its job")
    root = root_of(request)
    response.headers["Location"] = f"{root}/jobs/{job_id}"
    return detail_document(reports.job_detail(job_id, log_limit=0), root)


# -- read --------------------------------------------------------------------------------


@router.get("/definitions")
def list_definitions(
    caller: Caller,
    request: Request,
    include_archived: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Any:
    """The tenant's definitions by name (the page shape of ``GET /jobs``), each with its
    schedule in words, next run and last run; archived ones with ``include_archived=true``."""
    found = definitions.list_(caller.tenant, include_archived=include_archived)
    shown = found[(page - 1) * limit : page * limit]
    root = root_of(request)
    return {
        "items": [_with_links(document, root) for document in definition_reads.documents(shown)],
        "page": page,
        "limit": limit,
        "total": len(found),
        "has_more": len(found) > page * limit,
    }


@router.get("/definitions/{name}")
def get_definition(name: str, caller: Caller, request: Request) -> Any:
    """One definition with its schedule in words, next run, version and last run."""
    return _document(own_definition(name, caller), request)


@router.get("/definitions/{name}/runs")
def list_definition_runs(
    name: str,
    caller: Caller,
    request: Request,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Any:
    """The jobs made from the definition, newest first (the page shape of ``GET /jobs``)."""
    current = own_definition(name, caller)
    filters = reports.JobFilter(
        status=statuses(status_), tenant=caller.tenant, definition_id=current.id
    )
    listed = reports.list_jobs(filters, limit=limit, page=page)
    return page_document(listed, reports.count_jobs(filters), root_of(request))


def own_definition(name: str, caller: ApiKey) -> Definition:
    """The caller's tenant's definition ``name``; 404 when there is none (another
    tenant's is answered the same)."""
    found = definitions.get(caller.tenant, name)
    if found is None:
        raise _not_found(name)
    return found


# -- helpers -----------------------------------------------------------------------------


def _document(definition: Definition, request: Request) -> dict[str, Any]:
    last = definition_reads.last_runs([definition.id]).get(definition.id)
    return _with_links(definition_reads.document(definition, last), root_of(request))


def _with_links(document: dict[str, Any], root: str) -> dict[str, Any]:
    base = f"{root}/definitions/{document['name']}"
    document["links"] = {"self": base, "run": f"{base}/run", "runs": f"{base}/runs"}
    return document


def _runnable_task(definition: Definition) -> JobTask:
    """The task of a definition whose type API keys may create; 403 otherwise (the
    maintenance definitions act on every tenant: the CLI manages them)."""
    task = creatable_task(definition.type)
    if task is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"job type {definition.type!r} is not run or changed by API keys "
            "(`jobledger definitions` manages it)",
        )
    return task


def _not_found(name: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no definition named {name!r}")


def field_of(name: str) -> str:
    """A field an error of the door names, as the request names it (the door names them
    by their path in the body already: ``payload.value``, ``schedule.cron``)."""
    return "payload" if name in ("payload.*", "*", "") else name


@contextmanager
def _answers() -> Iterator[None]:
    """The door's refusals as HTTP answers: 422 naming each field, 409 a duplicate name
    or a run of an archived definition."""
    try:
        yield
    except InvalidPayload as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [field_error(field_of(name), problem) for name, problem in error.fields.items()],
        ) from None
    except DefinitionExists as error:
        raise HTTPException(status.HTTP_409_CONFLICT, [field_error("name", str(error))]) from None
    except DefinitionArchived as error:  # archived between the read and the run
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
