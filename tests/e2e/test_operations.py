"""Operator cancel and retry: durable in the ledger, revoke only as the fast path."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from app.exceptions import InvalidJobId, JobNotFound, PayloadNotKept, TransitionRefused
from app.ledger import transitions as ledger_api
from app.ledger.operations import actions as operations
from tests.support import ledger
from tests.support.jobs import echo, fail, gate_key, gated
from tests.support.ops import wait_at
from tests.support.processes import WorkerProcess, start_worker


def test_a_job_canceled_while_no_worker_runs_never_runs_when_one_starts(
    worker_logs: Path,
) -> None:
    queue = f"jobledger-test-{uuid.uuid4().hex[:8]}"  # no worker consumes it yet
    canceled = echo.apply_async(kwargs={"value": 1}, queue=queue)

    result = operations.cancel(canceled.id, actor="cli")
    assert result.outcome == "canceled"
    assert ledger.job(canceled.id)["status"] == "canceled"  # type: ignore[index]
    later = echo.apply_async(kwargs={"value": 2}, queue=queue)

    late_worker = start_worker(worker_logs, concurrency=1, extra=("-Q", queue))
    try:
        ledger.wait_for_status(later.id, "succeeded")  # the worker went past the first
    finally:
        late_worker.stop()
    row = ledger.job(canceled.id)
    assert row is not None
    assert row["status"] == "canceled"
    assert row["started_at"] is None
    assert row["attempts"] == 0
    assert ledger.transitions(canceled.id) == [(None, "queued"), ("queued", "canceled")]
    assert ledger.count("SELECT count(*) FROM job_logs WHERE job_id = :id", id=canceled.id) == 0


def test_cancel_stops_a_running_job_at_its_next_checkpoint_and_retry_runs_it_again(
    worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    job = gated.delay(gate=gate, steps=2)
    wait_at(redis_client, gate)

    result = operations.cancel(job.id, actor="cli", reason="operator said stop")
    assert result.outcome == "requested"
    assert result.revoked == (str(job.id),)
    row = ledger.wait_for_status(job.id, "canceled")
    assert row["failure_reason"]  # says why it stopped
    assert row["progress"] < 100

    retried = operations.retry(job.id, actor="cli")
    assert retried.job_id == uuid.UUID(str(job.id))
    assert retried.celery_task_id != str(job.id)
    redis_client.rpush(gate_key(gate), 1, 2)
    row = ledger.wait_for_status(job.id, "succeeded")

    assert row["attempts"] == 2
    assert row["celery_task_id"] == retried.celery_task_id
    assert row["result"] == {"steps": 2}
    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "canceled"),
        ("canceled", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    actors = [e["actor"] for e in ledger.events(job.id)]
    assert actors[3] == "cli"


def test_retry_of_a_succeeded_job_is_refused_and_changes_nothing(worker: WorkerProcess) -> None:
    job = echo.delay(value=3)
    ledger.wait_for_status(job.id, "succeeded")
    events_before = ledger.events(job.id)

    with pytest.raises(TransitionRefused, match="it is succeeded; retry applies to failed or"):
        operations.retry(job.id, actor="api")

    assert ledger.job(job.id)["status"] == "succeeded"  # type: ignore[index]
    assert ledger.events(job.id) == events_before


def test_retry_of_a_failed_job_queues_it_again_under_the_same_id(worker: WorkerProcess) -> None:
    from tests.support.jobs import fail

    job = fail.delay(message="boom")
    ledger.wait_for_status(job.id, "failed")

    operations.retry(job.id, actor="cli")
    row = ledger.wait_for_status(job.id, "failed")  # it fails again, on purpose

    assert row["attempts"] == 2
    assert [t for _, t in ledger.transitions(job.id)].count("failed") == 2


def test_cancel_of_a_finished_job_is_refused(worker: WorkerProcess) -> None:
    job = echo.delay(value=4)
    ledger.wait_for_status(job.id, "succeeded")

    with pytest.raises(TransitionRefused, match="cannot cancel"):
        operations.cancel(job.id, actor="cli")


def test_operations_by_run_name_and_unknown_references(redis_client: redis.Redis) -> None:
    queue = f"jobledger-test-{uuid.uuid4().hex[:8]}"
    job = echo.apply_async(kwargs={"value": 5}, queue=queue)
    name = ledger.job(job.id)["name"]  # type: ignore[index]

    assert operations.cancel(name, actor="cli").outcome == "canceled"
    redis_client.delete(queue)
    with pytest.raises(InvalidJobId, match="not a job id"):
        operations.cancel("not-a-job", actor="cli")
    with pytest.raises(JobNotFound, match="jobledger jobs"):
        operations.retry(str(uuid.uuid4()), actor="cli")


def test_retry_of_a_job_whose_payload_held_a_secret_is_refused_with_what_to_do() -> None:
    result = fail.apply_async(kwargs={"message": "password=hunter2"}, queue="nobody-listens")
    job_id = uuid.UUID(result.id)
    ledger_api.request_cancel(job_id, actor="cli", reason="test")
    with pytest.raises(PayloadNotKept, match="submit the job again"):
        operations.retry(job_id, actor="cli")
    assert ledger.job(job_id)["status"] == "canceled"
