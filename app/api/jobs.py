"""The jobs API: create, read, list, cancel and retry jobs of the caller's tenant.

The API never writes the ledger itself. A job is created through its task's
``apply_async`` (validated, recorded ``queued``, then published, exactly as a producer's
``delay()``), with ``trigger="api"``, ``created_by`` = the key's name and ``tenant`` = the
key's tenant; cancel and retry go through :mod:`app.ledger.operations.actions` with actor
``api``, every event they write naming the key (``actor_name``). Reads go through
:mod:`app.ledger.reads.reports` and :mod:`app.ledger.reads.job_search`.

Reads need any key; creating, canceling and retrying need an ``operator`` (or ``admin``)
key: a ``viewer`` gets 403 naming the role it lacks (:mod:`app.api.auth`).

Every route is scoped to the key's tenant, and a job of another tenant is answered
exactly like a job that does not exist (404): a key cannot learn that it exists.

Ledger errors become HTTP answers in :mod:`app.api.main` (one place): ``InvalidJobId``
400, ``JobNotFound`` 404, ``TransitionRefused`` 409, ``InvalidPayload`` 422 (naming each
``payload.<field>``), ``LedgerUnavailable`` and an unreachable broker 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError

from app.api.auth import ApiKey, require_key, role_required
from app.api.parameters import utc_parameter, without_nul
from app.api.schemas import (
    ERRORS,
    CreateJob,
    HistoryPage,
    JobDocument,
    JobPage,
    JobType,
    Stats,
    detail_document,
    field_error,
    links,
    page_document,
)
from app.celery import app as celery_app
from app.config import settings
from app.exceptions import InvalidIdempotencyKey, JobNotFound, LedgerUnavailable
from app.inputs import MAX_PAGE, refuse_unstorable
from app.ledger import idempotency
from app.ledger.operations import actions as operations
from app.ledger.reads import job_search, reports
from app.ledger.reads.job_search import DEFAULT_SORT, MAX_TEXT, Sort
from app.ledger.rules.attribution import attributed
from app.ledger.rules.states import normalize
from app.ledger.runtime.task import JobTask

router = APIRouter(tags=["jobs"], dependencies=[Depends(without_nul)], responses=ERRORS)
Caller = Annotated[ApiKey, Depends(require_key)]
#: A caller whose key may act (create, cancel, retry): ``operator`` or ``admin``.
Operator = Annotated[ApiKey, Depends(role_required("operator"))]

#: Job types that act on every tenant's jobs; no tenant key may start them (beat and the
#: CLI do). ``JOBLEDGER_API_JOB_TYPES``, when set, is the exact list instead.
MAINTENANCE_TYPES = frozenset({"purge", "lifeline", "settle_counts"})
#: Largest page of ``GET /jobs`` (the reports module allows more, for the CLI).
MAX_LIMIT = 200
#: Log lines ``GET /jobs/{id}/logs`` returns at most (the newest ones).
MAX_LOG_LINES = 5000


class CancelJob(BaseModel):
    """Optional body of ``POST /jobs/{id}/cancel``."""

    model_config = ConfigDict(extra="forbid")

    #: Recorded as the job's failure reason and in its cancel event.
    reason: Annotated[str, AfterValidator(refuse_unstorable)] | None = Field(
        default=None, min_length=1, max_length=500
    )


# -- create ------------------------------------------------------------------------------


@router.post(
    "/jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobDocument,
    response_model_exclude_unset=True,
)
def create_job(
    body: CreateJob,
    caller: Operator,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Validate, record and publish a job; 202 with the job as the ledger has it.

    The answer's ``status`` is ``queued`` unless a worker already picked the job up in
    the moment between publish and this read: it is the ledger's word, not a guess.

    With an ``Idempotency-Key`` header, the same key and body again answer 200 with the
    job made the first time (``Idempotent-Replayed: true``), another body 409
    (:mod:`app.ledger.idempotency`). Once the job is recorded and published the answer is
    never a 5xx: if the ledger cannot be read back, the job is described from what was
    just written.
    """
    task = creatable_task(body.type)
    if task is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error("type", unknown_type(body.type))]
        )
    payload = payload_of_tenant(task, body.payload, caller)
    with attributed(caller.name):
        result = task.apply_async(
            kwargs=payload,
            trigger="api",
            created_by=caller.name,
            tenant=caller.tenant,
            subject=body.subject,
            priority=body.priority,
            idempotency_key=key_of(idempotency_key),
        )
    root = root_of(request)
    response.headers["Location"] = f"{root}/jobs/{result.id}"
    if getattr(result, "replayed", False):
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    try:
        return detail_document(reports.job_detail(str(result.id), log_limit=0), root)
    except (LedgerUnavailable, OperationalError):
        # recorded and published: say so (a 5xx would invite a duplicate)
        return {
            "id": str(result.id),
            "type": body.type,
            "status": "queued",
            "links": links(result.id, root),
        }


def key_of(header: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value (a structured-field string may be quoted);
    400 naming the header when it is not a valid key."""
    if header is None:
        return None
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    try:
        return idempotency.checked_key(value)
    except InvalidIdempotencyKey as error:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, [field_error("Idempotency-Key", str(error))]
        ) from None


def creatable_task(job_type: str) -> JobTask | None:
    """The task of a job type the API may create, or None (unknown, not a job task, or
    not allowed)."""
    if not may_create(job_type):
        return None
    task = operations.registered_task(job_type)
    return task if isinstance(task, JobTask) else None


def unknown_type(job_type: str) -> str:
    """Why a ``type`` is refused, listing the types the API creates."""
    return f"unknown job type {job_type!r}; known: {', '.join(creatable_types()) or 'none'}"


def creatable_types() -> list[str]:
    """Every job type the API may create, sorted (for error messages and ``/job-types``)."""
    celery_app.loader.import_default_modules()
    return sorted(
        name
        for name, task in celery_app.tasks.items()
        if isinstance(task, JobTask) and may_create(name)
    )


def may_create(job_type: str) -> bool:
    """Whether the configured allow-list (``JOBLEDGER_API_JOB_TYPES``) holds the type;
    with none configured, every type but the maintenance ones."""
    configured = {name.strip() for name in settings().api_job_types.split(",") if name.strip()}
    if configured:
        return job_type in configured
    return job_type not in MAINTENANCE_TYPES


def payload_of_tenant(task: JobTask, payload: dict[str, Any], caller: ApiKey) -> dict[str, Any]:
    """The payload with its ``tenant`` field set to the key's tenant.

    Job types with a ``tenant`` field (import, export) read and write that tenant's
    data, so a key must not name another one: 403, since the request is well-formed but
    the key is not allowed to act there. An absent tenant is filled in (the model's
    default, ``default``, would be somebody else's data).
    """
    refusal = foreign_tenant(task, payload, caller)
    if refusal is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, [field_error("payload.tenant", refusal)])
    if "tenant" not in task.payload_model.model_fields:
        return payload
    return {**payload, "tenant": caller.tenant}


def foreign_tenant(task: JobTask, payload: dict[str, Any], caller: ApiKey) -> str | None:
    """Why the payload's ``tenant`` field is refused to this key (it names another
    tenant), or None."""
    given = payload.get("tenant")
    if "tenant" not in task.payload_model.model_fields or given in (None, caller.tenant):
        return None
    return f"this API key acts for tenant {caller.tenant!r} only; leave tenant out or give that one"


# -- read --------------------------------------------------------------------------------


@router.get("/jobs", response_model=JobPage, response_model_exclude_unset=True)
def list_jobs(
    caller: Caller,
    request: Request,
    q: Annotated[str | None, Query(max_length=MAX_TEXT)] = None,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    type_: Annotated[list[str] | None, Query(alias="type", max_length=64)] = None,
    queue: Annotated[list[str] | None, Query(max_length=128)] = None,
    definition: Annotated[str | None, Query(max_length=128)] = None,
    worker: Annotated[str | None, Query(max_length=256)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    dead: bool = False,
    sort: Sort = DEFAULT_SORT,
    subject: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Any:
    """Search the tenant's jobs (newest first unless ``sort``): ``q`` matches an id, a
    run name prefix, or a piece of the subject or failure reason; ``status``, ``type``
    and ``queue`` may repeat (or be comma separated) and match any; ``status`` accepts
    other job systems' words (``Completed``, ``Cancelled``…); ``created_after``/
    ``created_before`` are ISO 8601 (``since`` is an older name of ``created_after``);
    ``sort`` is ``created``, ``finished`` or ``duration``, ``-`` first for descending."""
    filters = search_filter(
        caller,
        q=q,
        statuses=statuses(status_),
        types=words(type_),
        queues=words(queue),
        definition=definition,
        worker=worker,
        created_after=utc_parameter("created_after", created_after)
        or utc_parameter("since", since),
        created_before=utc_parameter("created_before", created_before),
        dead=dead,
        sort=sort,
        subject=subject,
    )
    listed = job_search.search(filters, limit=limit, page=page)
    return page_document(listed, job_search.count(filters), root_of(request))


def search_filter(caller: ApiKey, **fields: Any) -> job_search.JobFilter:
    """The caller's tenant's search; 422 naming the parameter a value is refused for."""
    try:
        return job_search.JobFilter(tenant=caller.tenant, text=fields.pop("q") or None, **fields)
    except ValueError as error:
        name, _, problem = str(error).partition(": ")
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error(name, problem)]
        ) from None


def words(values: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated values of one parameter."""
    return tuple(
        word.strip() for value in values or () for word in value.split(",") if word.strip()
    )


@router.get("/subjects/{subject}/jobs", response_model=JobPage, response_model_exclude_unset=True)
def list_subject_jobs(
    subject: str,
    caller: Caller,
    request: Request,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Any:
    """Every job of the tenant about one subject (a budget, a dataset…), newest first."""
    filters = reports.JobFilter(status=statuses(status_), tenant=caller.tenant, subject=subject)
    return _page(filters, limit, page, request)


@router.get("/jobs/stats", response_model=Stats)
def job_stats(caller: Caller, since: datetime | None = None) -> Any:
    """Counts per status and per type and status, live jobs and the oldest live one."""
    return reports.jsonable(
        reports.stats(tenant=caller.tenant, since=utc_parameter("since", since))
    )


@router.get("/job-types", response_model=list[JobType])
def job_types(caller: Caller) -> Any:
    """The job types this API creates, each with the JSON schema of its payload."""
    return [
        {"type": name, "payload_schema": task.payload_model.model_json_schema()}
        for name in creatable_types()
        if (task := creatable_task(name)) is not None
    ]


@router.get("/jobs/{ref}", response_model=JobDocument, response_model_exclude_unset=True)
def get_job(ref: str, caller: Caller, request: Request) -> Any:
    """One job by UUID or run name, with its steps and files."""
    return detail_document(own_job(ref, caller), root_of(request))


@router.get("/jobs/{ref}/events", response_model=HistoryPage)
def get_job_events(ref: str, caller: Caller) -> Any:
    """The job's history: one event per status change of the job or a step, in order."""
    detail = own_job(ref, caller)
    return {"job_id": str(detail.job["id"]), "items": reports.jsonable(detail.events)}


@router.get("/jobs/{ref}/logs", response_model=HistoryPage)
def get_job_logs(
    ref: str,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_LINES)] = 1000,
) -> Any:
    """The job's last ``limit`` log lines, oldest first."""
    detail = own_job(ref, caller, log_limit=limit)
    return {"job_id": str(detail.job["id"]), "items": reports.jsonable(detail.logs)}


def own_job(ref: str, caller: ApiKey, *, log_limit: int = 0) -> reports.JobDetail:
    """The job ``ref`` designates if it belongs to the caller's tenant.

    Raises:
        InvalidJobId: malformed reference.
        JobNotFound: no such job, or another tenant's (indistinguishable on purpose).
    """
    detail = reports.job_detail(ref, log_limit=log_limit)
    if detail.job["tenant"] != caller.tenant:
        raise JobNotFound(ref)
    return detail


# -- operate -----------------------------------------------------------------------------


@router.post("/jobs/{ref}/cancel", response_model=JobDocument, response_model_exclude_unset=True)
def cancel_job(
    ref: str,
    caller: Operator,
    request: Request,
    response: Response,
    body: CancelJob | None = None,
) -> Any:
    """Cancel a live job: 200 when it is canceled now (it was waiting), 202 when a running
    job was asked to stop at its next checkpoint; 409 once it has finished."""
    job_id = own_job(ref, caller).job["id"]
    reason = body.reason if body is not None and body.reason else f"canceled by {caller.name}"
    with attributed(caller.name):
        result = operations.cancel(job_id, actor="api", reason=reason)
    response.status_code = (
        status.HTTP_200_OK if result.outcome == "canceled" else status.HTTP_202_ACCEPTED
    )
    document = detail_document(reports.job_detail(job_id), root_of(request))
    document["outcome"] = result.outcome
    return document


@router.post(
    "/jobs/{ref}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobDocument,
    response_model_exclude_unset=True,
)
def retry_job(ref: str, caller: Operator, request: Request) -> Any:
    """Queue a failed or canceled job again (same id, new message); 409 otherwise."""
    job_id = own_job(ref, caller).job["id"]
    with attributed(caller.name):
        operations.retry(job_id, actor="api")
    return detail_document(reports.job_detail(job_id), root_of(request))


# -- helpers -----------------------------------------------------------------------------


def _page(filters: reports.JobFilter, limit: int, page: int, request: Request) -> Any:
    listed = reports.list_jobs(filters, limit=limit, page=page)
    return page_document(listed, reports.count_jobs(filters), root_of(request))


def statuses(values: list[str] | None) -> tuple[str, ...]:
    """Status words from repeated and comma-separated ``status`` parameters, checked here
    so an unknown word is a 422 naming the parameter, not a 500."""
    words = [word.strip() for value in values or () for word in value.split(",") if word.strip()]
    for word in words:
        try:
            normalize(word)
        except ValueError as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, [field_error("status", str(error))]
            ) from None
    return tuple(words)


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")
