"""The ledger API against real PostgreSQL: guarded transitions, duplicates, history."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app import db
from app.ledger import transitions as ledger
from app.ledger.rules.states import JobStatus
from tests.support import ledger as read

S = JobStatus


def queued_job(job_type: str = "example.echo") -> uuid.UUID:
    job_id = uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(id=job_id, type=job_type, payload={"value": 1}, celery_task_id=str(job_id))
    )
    return job_id


def start(job_id: uuid.UUID, execution: str = "e1") -> ledger.Start:
    return ledger.record_started(
        job_id, celery_task_id=str(job_id), execution_id=execution, worker="w1"
    )


def test_a_new_job_is_queued_with_one_creation_event() -> None:
    job_id = queued_job()
    assert read.job(job_id)["status"] == "queued"
    assert read.transitions(job_id) == [(None, "queued")]
    assert read.events(job_id)[0]["actor"] == "producer"


def test_publishing_the_same_id_twice_keeps_one_row_and_one_event() -> None:
    job_id = queued_job()
    again = ledger.record_queued(ledger.NewJob(id=job_id, type="example.echo", payload={}))
    assert again is False
    assert read.count("SELECT count(*) FROM jobs") == 1
    assert read.transitions(job_id) == [(None, "queued")]


def test_start_counts_the_attempt_and_records_the_worker() -> None:
    job_id = queued_job()
    verdict = start(job_id)
    row = read.job(job_id)
    assert verdict.run
    assert verdict.attempt == 1
    assert (row["status"], row["attempts"], row["worker"]) == ("running", 1, "w1")
    assert row["started_at"] >= row["created_at"]


def test_the_same_start_reported_twice_writes_one_event() -> None:
    job_id = queued_job()
    start(job_id)
    second = start(job_id)
    assert second.run  # the same execution may go on
    assert read.job(job_id)["attempts"] == 1
    assert read.transitions(job_id) == [(None, "queued"), ("queued", "running")]


def test_finishing_twice_writes_one_event() -> None:
    job_id = queued_job()
    start(job_id)
    assert ledger.record_finished(job_id, execution_id="e1", result={"ok": 1}) is S.SUCCEEDED
    assert ledger.record_finished(job_id, execution_id="e1", result={"ok": 2}) is None
    row = read.job(job_id)
    assert (row["status"], row["progress"], row["result"]) == ("succeeded", 100, {"ok": 1})
    assert row["completed_at"] >= row["started_at"]
    assert read.transitions(job_id)[-1] == ("running", "succeeded")
    assert len(read.events(job_id)) == 3


def test_a_late_start_never_moves_a_finished_job_back_to_running() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.record_finished(job_id, execution_id="e1", result=None)
    late = start(job_id, execution="e2")
    assert not late.run
    assert "already succeeded" in late.reason
    assert read.job(job_id)["status"] == "succeeded"
    assert len(read.events(job_id)) == 3


def test_a_stale_execution_cannot_finish_or_retry_a_newer_one() -> None:
    job_id = queued_job()
    start(job_id, "e1")
    start(job_id, "e2")  # redelivered: e1 is presumed lost
    assert not ledger.record_retrying(job_id, execution_id="e1", reason="late")
    assert ledger.record_finished(job_id, execution_id="e1", result=None) is None
    assert ledger.record_finished(job_id, execution_id="e2", result=None) is S.SUCCEEDED
    assert read.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert read.job(job_id)["attempts"] == 2


def test_failure_requires_and_redacts_a_reason() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.record_failed(
        job_id,
        reason="cannot reach postgresql://app:s3cret@db/app",
        errors=[{"message": "token=abc123 rejected"}],
        execution_id="e1",
    )
    row = read.job(job_id)
    assert row["status"] == "failed"
    assert row["failure_reason"] == "cannot reach postgresql://app:***@db/app"
    assert "abc123" not in str(row["errors"])


def test_cancel_of_a_queued_job_is_immediate_and_durable() -> None:
    job_id = queued_job()
    assert ledger.request_cancel(job_id, actor="api", reason="not needed") == "canceled"
    verdict = start(job_id)
    assert not verdict.run
    assert read.job(job_id)["status"] == "canceled"
    assert read.transitions(job_id) == [(None, "queued"), ("queued", "canceled")]
    assert read.events(job_id)[-1]["actor"] == "api"


def test_cancel_of_a_running_job_is_an_intent_its_checkpoint_sees() -> None:
    job_id = queued_job()
    start(job_id)
    assert not ledger.checkpoint(job_id, "e1", 10)
    assert ledger.request_cancel(job_id, actor="cli", reason="stop") == "requested"
    assert read.job(job_id)["status"] == "running"
    assert ledger.checkpoint(job_id, "e1", 20)


def test_cancel_of_a_finished_job_reports_its_status() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.record_finished(job_id, execution_id="e1", result=None)
    assert ledger.request_cancel(job_id, actor="api", reason="late") is S.SUCCEEDED


def test_progress_never_goes_down_within_an_attempt() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.checkpoint(job_id, "e1", 60, "most")
    ledger.checkpoint(job_id, "e1", 30, "less")
    row = read.job(job_id)
    assert row["progress"] == 60
    assert row["progress_message"] == "less"


def test_manual_retry_requeues_a_failed_job_keeping_its_history() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.record_failed(job_id, reason="boom", execution_id="e1")
    assert ledger.record_requeued(job_id, celery_task_id="t2", actor="cli")
    assert not ledger.record_requeued(job_id, celery_task_id="t3", actor="cli")
    retried = ledger.record_started(job_id, celery_task_id="t2", execution_id="e2", worker="w")
    assert retried.run
    assert retried.attempt == 2
    assert [t for _, t in read.transitions(job_id)] == [
        "queued",
        "running",
        "failed",
        "queued",
        "running",
    ]


def test_a_stale_message_of_a_requeued_job_does_not_run() -> None:
    job_id = queued_job()
    start(job_id)
    ledger.record_failed(job_id, reason="boom", execution_id="e1")
    ledger.record_requeued(job_id, celery_task_id="t2", actor="cli")
    stale = ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e3", worker="w")
    assert not stale.run
    assert "stale message" in stale.reason


def test_log_lines_are_redacted_and_truncated() -> None:
    job_id = queued_job()
    ledger.append_log(job_id, "password=hunter2 " + "z" * 20_000)
    with db.engine().connect() as connection:
        message = connection.execute(text("SELECT message FROM job_logs")).scalar_one()
    assert "hunter2" not in message
    assert len(message) <= ledger.MAX_TEXT
    assert "truncated" in message


def test_job_events_refuse_update_on_postgresql() -> None:
    queued_job()
    with pytest.raises(DBAPIError, match="append-only"), db.engine().begin() as connection:
        connection.execute(text("UPDATE job_events SET message = 'rewritten'"))
    assert read.count("SELECT count(*) FROM job_events WHERE message = 'rewritten'") == 0


def test_a_failed_job_without_reason_is_refused_by_the_schema() -> None:
    job_id = queued_job()
    with pytest.raises(DBAPIError, match="failed_reason"), db.engine().begin() as connection:
        connection.execute(
            text("UPDATE jobs SET status = 'failed' WHERE id = :id"), {"id": str(job_id)}
        )
