"""A message's ``jobledger`` header resolves to one target: a job or a chain step.

Pure: no database, broker or worker. The requests are Celery's own ``Context``, built
from a message's headers the way a worker builds it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from celery.app.task import Context

from app.exceptions import InvalidLedgerHeader
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.execution import Execution, context_of, execution_of, keep
from app.ledger.runtime.target import (
    HEADER,
    JobTarget,
    StepTarget,
    target_for,
    target_of,
    target_of_message,
    uuid_of_task_id,
)
from app.ledger.transitions import Start

JOB = uuid.UUID("2f1c7a52-6c1e-4f0e-9b7a-0d5c3b9e8a11")
STEP = uuid.UUID("8d0e4b6a-1f2c-4a3b-9c8d-7e6f5a4b3c2d")


def request(headers: Mapping[str, object], task_id: str | None = None) -> Context:
    """A task request as the worker makes it: the message headers are its fields."""
    return Context({"id": task_id or str(uuid.uuid4()), "task": "example.echo", **headers})


def test_a_job_header_resolves_to_that_job() -> None:
    target = target_of(request({HEADER: {"job_id": str(JOB)}}))

    assert target == JobTarget(JOB)
    assert target.step_id is None


def test_a_step_header_resolves_to_that_step_of_its_job() -> None:
    header = {"job_id": str(JOB), "step_id": str(STEP), "position": 2}

    target = target_of(request({HEADER: header}))

    assert isinstance(target, StepTarget)
    assert (target.job_id, target.step_id, target.position) == (JOB, STEP, 2)


def test_the_job_id_of_a_job_header_is_not_the_task_id() -> None:
    """A manual retry publishes the job again under a new task id."""
    task_id = str(uuid.uuid4())

    assert target_of(request({HEADER: {"job_id": str(JOB)}}, task_id)).job_id == JOB


def test_no_header_means_a_producer_without_the_ledger_whose_task_id_is_the_job() -> None:
    task_id = str(uuid.uuid4())

    assert target_of(request({}, task_id)) == JobTarget(uuid.UUID(task_id))


def test_a_task_id_that_is_no_uuid_gets_a_stable_job_id() -> None:
    first = target_of(request({}, "nightly-report"))

    assert first == target_of(request({}, "nightly-report"))
    assert first != target_of(request({}, "weekly-report"))
    assert first.job_id == uuid_of_task_id("nightly-report")


def test_an_empty_header_is_no_header() -> None:
    task_id = str(uuid.uuid4())

    assert target_of(request({HEADER: {}}, task_id)) == JobTarget(uuid.UUID(task_id))


def test_a_header_whose_job_id_is_no_uuid_is_refused_naming_it() -> None:
    with pytest.raises(InvalidLedgerHeader, match="job_id 'not-a-uuid'"):
        target_of(request({HEADER: {"job_id": "not-a-uuid"}}))


def test_a_header_whose_step_id_is_no_uuid_is_refused_naming_it() -> None:
    with pytest.raises(InvalidLedgerHeader, match="step_id 'step-1'"):
        target_of(request({HEADER: {"job_id": str(JOB), "step_id": "step-1"}}))


def test_a_header_that_is_no_mapping_is_refused() -> None:
    with pytest.raises(InvalidLedgerHeader, match="not a mapping"):
        target_of(request({HEADER: str(JOB)}))


def test_a_position_that_is_no_number_is_ignored() -> None:
    header = {"job_id": str(JOB), "step_id": str(STEP), "position": "2"}

    target = target_of(request({HEADER: header}))

    assert target == StepTarget(JOB, STEP)
    assert isinstance(target, StepTarget)
    assert target.position is None


@pytest.mark.parametrize(
    "target", [JobTarget(JOB), StepTarget(JOB, STEP), StepTarget(JOB, STEP, position=3)]
)
def test_the_header_a_target_writes_resolves_to_that_target(
    target: JobTarget | StepTarget,
) -> None:
    resolved = target_of_message(target.header(), str(uuid.uuid4()))

    assert resolved == target
    assert resolved.header() == target.header()


def test_a_header_read_from_the_headers_field_is_the_same_as_from_the_request() -> None:
    """A reserved message (the lifeline) has only its headers; a request has both."""
    headers = {HEADER: {"job_id": str(JOB), "step_id": str(STEP)}}

    assert target_of_message(headers, "t") == target_of(request(headers, "t"))


def test_a_job_and_a_step_are_told_apart_only_by_the_step_id() -> None:
    assert target_for(JOB) == JobTarget(JOB)
    assert target_for(JOB, STEP) == StepTarget(JOB, STEP)


def test_a_job_context_reads_its_ids_from_its_target() -> None:
    job = JobContext(StepTarget(JOB, STEP), "execution-1", attempt=1)
    bare = JobContext(JOB, "execution-2", attempt=1)

    assert (job.job_id, job.step_id) == (JOB, STEP)
    assert (bare.target, bare.job_id, bare.step_id) == (JobTarget(JOB), JOB, None)


def test_a_step_refuses_an_execution_guard_on_a_lost_execution_rather_than_drop_it() -> None:
    with pytest.raises(ValueError, match="execution_id"):
        StepTarget(JOB, STEP).lost(reason="gone", worker="w", execution_id="e")


def test_a_request_carries_one_execution_once_its_start_is_recorded() -> None:
    task_request = request({HEADER: {"job_id": str(JOB)}})
    assert execution_of(task_request) is None

    kept = keep(task_request, Execution(JobTarget(JOB), "e1", Start(run=True, attempt=1)))

    assert execution_of(task_request) is kept
    with pytest.raises(RuntimeError, match="no job execution"):
        context_of(task_request)  # the body's context comes with __call__
    kept.context = JobContext(kept.target, kept.execution_id, attempt=1)
    assert context_of(task_request) is kept.context


def test_the_execution_does_not_hide_the_header_celery_put_on_the_request() -> None:
    """Celery makes each custom header a request attribute: ``request.jobledger`` is
    the header, so the execution lives under another name."""
    task_request = request({HEADER: {"job_id": str(JOB)}})

    keep(task_request, Execution(JobTarget(JOB), "e1", Start(run=True, attempt=1)))

    assert getattr(task_request, HEADER) == {"job_id": str(JOB)}
    assert target_of(task_request) == JobTarget(JOB)
