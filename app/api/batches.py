"""``POST /jobs/batch``: many jobs, of any creatable types, made all or nothing.

The body is a JSON array of ``POST /jobs`` bodies, at most :data:`MAX_BATCH` of them
(and within ``JOBLEDGER_API_MAX_BODY_BYTES``, :mod:`app.api.body_guard`). Every job is
checked before anything is written: its type (known and creatable by this key), its
payload by its job type, its subject and priority. A refusal names every refused field
by the job's index (``[3].payload.value``, ``[0].type``); a payload naming another
tenant is 403 (``[i].payload.tenant``), as for ``POST /jobs``. Then every job is
recorded ``queued`` in one ledger transaction and published
(:mod:`app.ledger.runtime.batch`, the core of :meth:`JobTask.apply_many` too), each with
the key's tenant, ``trigger="api"``, ``created_by`` = the key's name, every event naming
the key.

The answer is 202 with the jobs in the order of the request, as the ledger has them.
With an ``Idempotency-Key`` the batch is made once: the same key and body again answer
200 with the same jobs (``Idempotent-Replayed: true``), another body 409. A broker that
refuses the messages once the jobs are recorded: the jobs it did not take are recorded
``failed`` saying why, and the answer is 503 with every job of the batch as the ledger
has it then (which ones are failed, which ones were published), never a bare error.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

from app.api.auth import ApiKey
from app.api.jobs import (
    Operator,
    creatable_task,
    foreign_tenant,
    key_of,
    payload_of_tenant,
    root_of,
    unknown_type,
)
from app.api.parameters import without_nul
from app.api.schemas import (
    ERRORS,
    CreateJob,
    ErrorDocument,
    JobDocument,
    field_error,
    job_document,
    links,
)
from app.celery import app as celery_app
from app.exceptions import InvalidPayload, LedgerUnavailable
from app.ledger.reads import reports
from app.ledger.rules.attribution import attributed
from app.ledger.runtime.batch import Item, item_of, new_jobs, record_batch
from app.ledger.runtime.publishing import publish_recorded
from app.ledger.transitions import NewJob

#: Most jobs one ``POST /jobs/batch`` makes (more is 422, nothing written).
MAX_BATCH = 1000
#: How the failure reason of a job the broker did not take begins
#: (:func:`~app.ledger.runtime.publishing.record_unpublished`).
UNPUBLISHED = "could not publish the job to the broker"

log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"], dependencies=[Depends(without_nul)], responses=ERRORS)


class JobBatch(BaseModel):
    """``POST /jobs/batch``'s answer: the batch's jobs, in the order of the request."""

    items: list[JobDocument]


class UnpublishedBatch(ErrorDocument):
    """``POST /jobs/batch`` when the broker refused messages of the recorded jobs."""

    #: Every job of the batch as the ledger has it: those not published are ``failed``.
    items: list[JobDocument]


@router.post(
    "/jobs/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobBatch,
    response_model_exclude_unset=True,
    responses={
        200: {"model": JobBatch, "description": "the batch made before with this key"},
        503: {
            "model": UnpublishedBatch,
            "description": "the broker refused messages: the jobs it did not take are failed",
        },
    },
)
def create_jobs(
    body: Annotated[list[CreateJob], Body(min_length=1, max_length=MAX_BATCH)],
    caller: Operator,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Validate every job, record them all in one transaction, then publish them; 202
    with the jobs in the order of the request.

    A body of 1 to ``MAX_BATCH`` (1000) ``POST /jobs`` bodies. Refused fields are named
    ``[index].field``, all of them in one answer, and nothing is written.
    """
    key = key_of(idempotency_key)
    items, jobs = _checked(body, caller)
    root = root_of(request)
    with attributed(caller.name):
        batch = record_batch(items, jobs, idempotency_key=key)
        if batch.replayed is not None:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
        else:
            try:
                publish_recorded(celery_app, batch.messages, actor=batch.actor)
            except Exception as error:  # the broker's, whatever its class (kombu's, redis-py's
                # on a pipeline, amqp's MessageNacked): every job it did not take is failed
                return _unpublished(batch.job_ids, caller, root, error)
    return {"items": _documents(batch.job_ids, body, caller, root)}


def _checked(body: list[CreateJob], caller: ApiKey) -> tuple[list[Item], list[NewJob]]:
    """Every job of the body as an item of the batch, and the job it makes.

    Raises:
        HTTPException: 403 naming each payload that names another tenant; else 422
            naming every refused field (``[i].type``, ``[i].payload.<field>``…).
    """
    tasks = [creatable_task(job.type) for job in body]
    foreign = [
        field_error(f"[{index}].payload.tenant", refusal)
        for index, (job, task) in enumerate(zip(body, tasks, strict=True))
        if task is not None and (refusal := foreign_tenant(task, job.payload, caller))
    ]
    if foreign:  # as POST /jobs: the key may not act there, whatever else is wrong
        raise HTTPException(status.HTTP_403_FORBIDDEN, foreign)
    problems: list[dict[str, str]] = []
    items: list[Item] = []
    indexes: list[int] = []
    for index, (job, task) in enumerate(zip(body, tasks, strict=True)):
        if task is None:
            problems.append(field_error(f"[{index}].type", unknown_type(job.type)))
            continue
        try:
            items.append(
                item_of(
                    task,
                    payload_of_tenant(task, job.payload, caller),
                    trigger="api",
                    created_by=caller.name,
                    tenant=caller.tenant,
                    subject=job.subject,
                    priority=job.priority,
                )
            )
        except InvalidPayload as error:  # an option (subject, priority)
            problems.extend(field_error(f"[{index}].{n}", p) for n, p in error.fields.items())
            continue
        indexes.append(index)
    jobs: list[NewJob] = []
    try:
        jobs = new_jobs(items, indexes)
    except InvalidPayload as error:
        problems.extend(field_error(_in_payload(n), p) for n, p in error.fields.items())
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, sorted(problems, key=_index))
    return items, jobs


def _in_payload(field: str) -> str:
    """``[3].value`` (a payload's field, as :func:`new_jobs` names it) as the request
    names it: ``[3].payload.value`` (``[3].*``, the payload as a whole: ``[3].payload``)."""
    index, _, name = field.partition(".")
    return f"{index}.payload" if name == "*" else f"{index}.payload.{name}"


def _index(problem: dict[str, str]) -> int:
    """The index of the job a refused field belongs to (``[12].type`` -> 12)."""
    return int(problem["field"][1:].partition("]")[0])


def _documents(
    job_ids: list[uuid.UUID], body: list[CreateJob], caller: ApiKey, root: str
) -> list[dict[str, Any]]:
    """The batch's jobs as the ledger has them, in order (one read); described from the
    request if the ledger cannot be read back (the jobs are recorded and published: a
    5xx would invite a duplicate batch)."""
    try:
        rows = reports.jobs_by_id(job_ids, tenant=caller.tenant)
    except (LedgerUnavailable, OperationalError):
        rows = []
    if len(rows) == len(job_ids):
        return [job_document(row, root) for row in rows]
    return [
        {"id": str(job_id), "type": job.type, "status": "queued", "links": links(job_id, root)}
        for job_id, job in zip(job_ids, body, strict=True)
    ]


def _unpublished(
    job_ids: list[uuid.UUID], caller: ApiKey, root: str, error: Exception
) -> JSONResponse:
    """503: the broker refused the batch's messages partway (or from the first); every job
    is listed as the ledger has it now, the unpublished ones ``failed`` (if the ledger
    cannot be read either, its own 503 answers: which jobs went out is unknown)."""
    documents = [
        job_document(row, root) for row in reports.jobs_by_id(job_ids, tenant=caller.tenant)
    ]
    failed = sum(
        1
        for document in documents
        if document["status"] == "failed"
        and str(document.get("failure_reason")).startswith(UNPUBLISHED)
    )
    detail = (
        f"the broker (JOBLEDGER_BROKER_URL) is unreachable: {failed} of the batch's "
        f"{len(job_ids)} jobs could not be published and are recorded failed with that "
        "reason; the others were published (a queued one whose message the lost connection "
        "left unsure runs if it is in the broker, else the lifeline fails it). Retry the "
        "failed ones (POST /jobs/{id}/retry) "
        "once the broker answers"
    )
    log.error("batch of %d jobs not fully published: %s", len(job_ids), error, exc_info=error)
    return JSONResponse(
        UnpublishedBatch(detail=detail, items=documents).model_dump(
            mode="json", exclude_unset=True
        ),
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
