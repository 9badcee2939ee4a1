"""End to end: producer -> real Redis -> real prefork worker -> real PostgreSQL ledger."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
import redis

from app.celery import app
from app.ledger import transitions as ledger
from app.ledger.rules.states import JobStatus, is_valid_walk
from tests.support import ledger as read
from tests.support.jobs import echo, fail, flaky, gate_key, gated, refuse
from tests.support.processes import WorkerProcess, start_worker


def unique_queue() -> str:
    """A queue no running worker consumes: 'no worker is running' for this job."""
    return f"offline-{uuid.uuid4().hex[:8]}"


def assert_valid_history(job_id: str) -> None:
    walk = [
        (None if a is None else JobStatus(a), JobStatus(b)) for a, b in read.transitions(job_id)
    ]
    assert is_valid_walk(walk), walk


def wait_until_at_step(client: redis.Redis, gate: str, step: int, timeout: float = 30) -> None:
    """Block until the gated job announces it is waiting at ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = client.blpop([gate_key(gate) + ":at"], timeout=1)
        if item is not None and int(item[1]) == step:
            return
    raise AssertionError(f"gated job never reached step {step}")


def test_a_job_published_with_no_worker_waits_queued_then_runs(worker_logs: Path) -> None:
    queue = unique_queue()
    result = echo.apply_async(kwargs={"value": 7}, queue=queue)
    row = read.job(result.id)
    assert row["status"] == "queued"
    assert row["queue"] == queue
    assert read.transitions(result.id) == [(None, "queued")]

    late_worker = start_worker(worker_logs, concurrency=1, queue=queue)
    try:
        done = read.wait_for_status(result.id, "succeeded")
    finally:
        late_worker.stop()
    assert read.transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    created, started, finished = (e["created_at"] for e in read.events(result.id))
    assert created <= started <= finished
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["progress"] == 100
    assert done["result"]["value"] == 7
    assert done["attempts"] == 1
    assert done["worker"] == late_worker.name


def test_a_task_that_raises_fails_with_a_redacted_reason(worker: WorkerProcess) -> None:
    result = fail.delay("cannot reach postgresql://user:s3cret@host/db")
    row = read.wait_for_status(result.id, "failed")
    assert row["failure_reason"] == "RuntimeError: cannot reach postgresql://user:***@host/db"
    assert row["errors"][-1]["type"] == "RuntimeError"
    everything = read.count(
        "SELECT count(*) FROM jobs j JOIN job_events e ON e.job_id = j.id "
        "WHERE j.failure_reason LIKE '%s3cret%' OR j.errors::text LIKE '%s3cret%' "
        "OR e.message LIKE '%s3cret%' OR j.payload::text LIKE '%s3cret%'"
    )
    assert everything == 0
    assert_valid_history(result.id)


def test_a_job_failed_on_purpose_keeps_its_structured_errors(worker: WorkerProcess) -> None:
    result = refuse.delay("the budget is closed")
    row = read.wait_for_status(result.id, "failed")
    assert row["failure_reason"] == "the budget is closed"
    assert row["errors"] == [{"field": "message", "message": "the budget is closed"}]


def test_celery_retries_show_running_retrying_running(worker: WorkerProcess) -> None:
    result = flaky.delay(2)
    row = read.wait_for_status(result.id, "succeeded")
    assert row["attempts"] == 3
    assert row["result"] == {"attempts": 3}
    assert read.transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert [e["attempt"] for e in read.events(result.id)] == [0, 1, 1, 2, 2, 3, 3]


def test_a_cancel_made_while_no_worker_runs_holds_when_one_starts(worker_logs: Path) -> None:
    queue = unique_queue()
    result = echo.apply_async(kwargs={"value": 1}, queue=queue)
    assert ledger.request_cancel(uuid.UUID(result.id), actor="api", reason="not needed") == (
        "canceled"
    )
    late_worker = start_worker(worker_logs, concurrency=1, queue=queue)
    follower = echo.apply_async(kwargs={"value": 2}, queue=queue)  # proves the queue drained
    try:
        read.wait_for_status(follower.id, "succeeded")
    finally:
        late_worker.stop()
    row = read.job(result.id)
    assert row["status"] == "canceled"
    assert row["attempts"] == 0
    assert row["result"] is None
    assert read.count("SELECT count(*) FROM job_logs WHERE job_id = :id", id=result.id) == 0
    assert read.transitions(result.id) == [(None, "queued"), ("queued", "canceled")]


def test_revoking_a_queued_job_cancels_it_and_its_body_never_runs(
    worker_logs: Path, redis_client: redis.Redis, gate: str
) -> None:
    queue = unique_queue()
    busy = start_worker(worker_logs, concurrency=1, queue=queue)
    try:
        blocker = gated.apply_async(kwargs={"gate": gate, "steps": 1}, queue=queue)
        wait_until_at_step(redis_client, gate, 1)
        waiting = echo.apply_async(kwargs={"value": 3}, queue=queue)
        app.control.revoke(waiting.id)
        redis_client.rpush(gate_key(gate), "go")
        read.wait_for_status(blocker.id, "succeeded")
        row = read.wait_for_status(waiting.id, "canceled")
    finally:
        busy.stop()
    assert row["attempts"] == 0
    assert row["result"] is None
    assert "revoked" in row["failure_reason"]
    assert read.transitions(waiting.id) == [(None, "queued"), ("queued", "canceled")]
    assert read.count("SELECT count(*) FROM job_logs WHERE job_id = :id", id=waiting.id) == 0


def test_a_message_published_again_after_the_job_finished_changes_nothing(
    worker: WorkerProcess,
) -> None:
    first = echo.delay(11)
    read.wait_for_status(first.id, "succeeded")
    history = read.events(first.id)
    # the same task id again, as a redelivery or a confused producer would send it
    again = app.send_task("example.echo", kwargs={"value": 11}, task_id=first.id)
    follower = echo.delay(12)  # the worker takes messages in order: after this, `again` ran
    read.wait_for_status(follower.id, "succeeded")
    assert again.id == first.id
    assert read.count("SELECT count(*) FROM jobs WHERE id = :id", id=first.id) == 1
    assert read.events(first.id) == history
    assert read.job(first.id)["status"] == "succeeded"


def test_a_producer_without_the_ledger_gets_its_job_recorded_by_the_worker(
    worker: WorkerProcess,
) -> None:
    sent = app.send_task("example.echo", kwargs={"value": 5})
    row = read.wait_for_status(sent.id, "succeeded")
    assert row["type"] == "example.echo"
    assert read.transitions(sent.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert read.events(sent.id)[0]["actor"] == "worker"


def test_a_killed_pool_child_redelivers_the_job_with_its_history(
    worker_logs: Path, redis_client: redis.Redis, gate: str
) -> None:
    queue = unique_queue()  # only this test's worker may take the job
    own = start_worker(worker_logs, concurrency=2, queue=queue)
    try:
        result = gated.apply_async(kwargs={"gate": gate, "steps": 2}, queue=queue)
        wait_until_at_step(redis_client, gate, 1)
        running = read.wait_for_status(result.id, "running")
        signal_child(_child_running(own), signal.SIGKILL)
        # acks late + reject on worker lost: the message goes back and runs again, same id
        wait_until_at_step(redis_client, gate, 1)
        redis_client.rpush(gate_key(gate), "1", "2")
        row = read.wait_for_status(result.id, "succeeded")
    finally:
        own.stop()
    assert running["attempts"] == 1
    assert row["attempts"] == 2
    assert read.transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert_valid_history(result.id)


def test_a_cancel_of_a_running_job_stops_it_at_the_next_checkpoint(
    worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    result = gated.delay(gate=gate, steps=3)
    wait_until_at_step(redis_client, gate, 1)
    redis_client.rpush(gate_key(gate), "1")
    wait_until_at_step(redis_client, gate, 2)
    outcome = ledger.request_cancel(uuid.UUID(result.id), actor="cli", reason="operator")
    row = read.wait_for_status(result.id, "canceled")
    assert outcome == "requested"
    assert row["failure_reason"] == "operator"  # the cancel's reason, kept to the end
    assert read.transitions(result.id)[-1] == ("running", "canceled")
    assert read.events(result.id)[-1]["message"] == "operator"
    assert row["progress"] == 33
    assert row["completed_at"] >= row["started_at"]
    assert read.transitions(result.id)[-1] == ("running", "canceled")


def _child_running(worker: WorkerProcess, timeout: float = 30) -> int:
    """The pid of the pool child running the (only) active job, asked of the worker
    itself; asked again while a busy machine makes the reply late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = app.control.inspect(destination=[worker.name], timeout=2).active() or {}
        pids = [task["worker_pid"] for tasks in active.values() for task in tasks]
        if len(pids) == 1:
            assert pids[0] in worker.children()
            return int(pids[0])
    raise AssertionError(f"{worker.name} reported no single active job in {timeout}s")


def signal_child(pid: int, signum: int) -> None:
    import os

    os.kill(pid, signum)


@pytest.mark.parametrize("bad", [{"value": "seven"}, {"value": 1, "colour": "red"}, {}])
def test_a_bad_payload_is_refused_at_delay_naming_the_field(bad: dict[str, object]) -> None:
    from app.exceptions import InvalidPayload

    with pytest.raises(InvalidPayload) as refused:
        echo.delay(**bad)
    field = next(iter(refused.value.fields))
    assert field in str(refused.value)
    assert field in ("value", "colour")
    assert read.count("SELECT count(*) FROM jobs") == 0
    assert read.count("SELECT count(*) FROM run_name_counters") == 0


def test_a_result_the_ledger_cannot_store_fails_the_job_instead_of_leaving_it_running(
    worker: WorkerProcess,
) -> None:
    from tests.support.jobs import unstorable

    result = unstorable.delay(1)
    row = read.wait_for_status(result.id, "failed", "succeeded")
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith("the job's result could not be recorded")
    assert_valid_history(result.id)
