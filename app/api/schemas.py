"""Shapes of the API's requests and answers.

Answers are the ledger's own columns (snake_case, as ``jobledger jobs --json`` prints
them), statuses in the ledger's vocabulary (``queued``, ``running``, ``succeeded``…),
times as ISO 8601 in UTC, plus ``links`` to what a client does next. Errors are
FastAPI's: ``{"detail": "<message>"}``, or for a request that names bad fields
``{"detail": [{"field": "<dotted path in the body or query>", "message": "…"}]}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.inputs import refuse_unstorable
from app.ledger.reads.reports import JobDetail, Page, jsonable

#: Columns of the ledger that mean nothing to a client (the worker's private bookkeeping).
HIDDEN_COLUMNS = frozenset({"execution_id", "previous_status"})


class CreateJob(BaseModel):
    """``POST /jobs``: which job type to run, on what."""

    model_config = ConfigDict(extra="forbid")

    #: A registered job type (``import``, ``export``, ``sync``, ``sync_and_suggest``…).
    type: Annotated[str, AfterValidator(refuse_unstorable)] = Field(min_length=1, max_length=64)
    #: The job type's payload; validated by the job type itself.
    payload: dict[str, Any] = Field(default_factory=dict)
    #: What the job works on (budget, dataset…); defaults to the job type's subject field.
    subject: Annotated[str, AfterValidator(refuse_unstorable)] | None = Field(
        default=None, min_length=1, max_length=256
    )
    #: 0 (least urgent) to 9 (most urgent); default: the job type's
    #: (``JOBLEDGER_PRIORITIES``, else 5). See docs/operations.md, "Priorities".
    priority: int | None = Field(default=None, ge=0, le=9, strict=True)


class FieldError(BaseModel):
    """One refused field of a 4xx answer."""

    #: Dotted path in the body or query (``payload.value``, ``filter.status``, ``limit``).
    field: str
    message: str


class ErrorDocument(BaseModel):
    """Every error answer: a message, or the refused fields."""

    detail: str | list[FieldError]


#: The error answers every JSON route may give (their shape in the OpenAPI document).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorDocument, "description": description}
    for code, description in (
        (401, "no key, or an unknown one"),
        (403, "the key's role does not allow this (or another tenant's data in a payload)"),
        (404, "no such job, definition or operation in the key's tenant"),
        (409, "a refused transition, or a name or key used for something else"),
        (422, "refused fields, each named"),
        (503, "the ledger or the broker is unreachable"),
    )
}


class JobDocument(BaseModel):
    """A job as the ledger holds it (lists carry the summary columns; ``GET /jobs/{id}``
    also ``payload``, ``result``, ``errors``, ``metadata``, ``steps``, ``files``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    #: Run name, ``YYYYMMDDhhmmss[_N]``.
    name: str | None = None
    type: str | None = None
    #: queued, running, retrying, succeeded, partial, failed, canceled.
    status: str
    progress: int | None = None
    tenant: str | None = None
    subject: str | None = None
    queue: str | None = None
    worker: str | None = None
    attempts: int | None = None
    trigger: str | None = None
    created_by: str | None = None
    failure_reason: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    #: Run time in seconds, once finished (lists).
    duration: float | None = None
    #: The definition it was made from, by name.
    definition: str | None = None
    #: The last bulk operation that canceled or retried it.
    operation_id: int | None = None
    links: dict[str, str]
    steps: list[dict[str, Any]] | None = None
    files: list[dict[str, Any]] | None = None
    #: ``POST /jobs/{id}/cancel`` only: canceled, requested, already_requested.
    outcome: str | None = None


class JobPage(BaseModel):
    """One page of jobs."""

    items: list[JobDocument]
    page: int
    limit: int
    #: Jobs matching, every page together.
    total: int
    has_more: bool


class HistoryPage(BaseModel):
    """``GET /jobs/{id}/events`` and ``/logs``: the job's rows, in order."""

    job_id: str
    items: list[dict[str, Any]]


class Stats(BaseModel):
    """``GET /jobs/stats``: counts of the tenant's jobs."""

    total: int
    live: int
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]
    oldest_live_created_at: str | None


class JobType(BaseModel):
    """A job type the API creates, with its payload's JSON schema."""

    type: str
    payload_schema: dict[str, Any]


class OperationDocument(BaseModel):
    """A bulk operation (``POST /operations``, ``GET /operations/{id}``)."""

    id: int
    tenant: str
    name: str
    #: ``cancel`` or ``retry``.
    action: str
    #: The filter as query names (``q``, ``status``, ``type``…), empty ones left out.
    filter: dict[str, Any]
    #: Jobs the filter matched (that the action could move) when it started.
    matched: int
    #: Jobs acted on so far.
    done: int
    #: Matched jobs that had moved on by their turn (left alone, never forced).
    skipped: int
    #: ``running``, ``done`` or ``failed`` (``error`` says why; post it again to resume).
    status: str
    error: str | None
    #: The API key's name (or the CLI's operator) that ran it.
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None


class OperationPage(BaseModel):
    """``GET /operations``: one page, newest first."""

    items: list[OperationDocument]
    page: int
    limit: int
    total: int
    has_more: bool


class Preview(BaseModel):
    """A dry run of ``POST /operations``: how many jobs it would act on now."""

    action: str
    name: str
    filter: dict[str, Any]
    matched: int
    #: ``JOBLEDGER_BULK_MAX_JOBS``: a real run matching more is refused (422).
    max_jobs: int


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of a 4xx ``detail`` list."""
    return {"field": field, "message": message}


def links(job_id: object, root: str = "") -> dict[str, str]:
    """Where a client goes next with a job (paths, relative to the API's host)."""
    base = f"{root}/jobs/{job_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "logs": f"{base}/logs",
        "cancel": f"{base}/cancel",
        "retry": f"{base}/retry",
        "dashboard": f"{root}/dashboard/jobs/{job_id}",
    }


def job_document(row: dict[str, Any], root: str = "") -> dict[str, Any]:
    """A job row as JSON, with its links."""
    document: dict[str, Any] = jsonable(
        {key: value for key, value in row.items() if key not in HIDDEN_COLUMNS}
    )
    document["links"] = links(row["id"], root)
    return document


def detail_document(detail: JobDetail, root: str = "") -> dict[str, Any]:
    """A job with its steps and files (events and logs have their own endpoints: a long
    job's history would otherwise make every status poll heavy)."""
    document = job_document(detail.job, root)
    document["steps"] = jsonable(detail.steps)
    document["files"] = jsonable(detail.files)
    return document


def page_document(page: Page, total: int, root: str = "") -> dict[str, Any]:
    """One page of a list, newest first."""
    return {
        "items": [job_document(row, root) for row in page.items],
        "page": page.page,
        "limit": page.limit,
        "total": total,
        "has_more": page.has_more,
    }
