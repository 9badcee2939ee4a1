"""The lifeline: a job whose worker died does not stay ``running``; a queued job whose
message is gone does not stay ``queued``; nothing alive is touched.

Time is moved with SQL (back-dated heartbeats), never waited for.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from app import db
from app.celery import app
from app.ledger import transitions as ledger_writes
from app.ledger.operations import lifeline
from app.queues import redis_keys
from tests.support import ledger
from tests.support.brokers import ON_RABBITMQ, delete_queue, redis_only
from tests.support.jobs import gated
from tests.support.ops import backdate, safe_gated, wait_at
from tests.support.processes import WorkerProcess, start_worker


@pytest.fixture
def queue() -> str:
    """A queue of this test's own: only the workers the test starts consume it."""
    return f"jobledger-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def doomed_worker(worker_logs: Path, queue: str) -> Iterator[WorkerProcess]:
    """A worker on the test's queue, for the test to SIGKILL."""
    process = start_worker(worker_logs, concurrency=1, extra=("-Q", queue))
    yield process
    if process.process.poll() is None:
        process.kill()


@pytest.mark.skipif(
    ON_RABBITMQ,
    reason="RabbitMQ gives a dead worker's message back to its queue: the lifeline records "
    "the job as a lost execution, not failed (tests/faults/test_rabbitmq.py::"
    "test_the_lifeline_gives_a_dead_worker_s_job_to_its_requeued_message)",
)
def test_a_sigkilled_worker_s_job_is_failed_as_worker_lost(
    doomed_worker: WorkerProcess, queue: str, redis_client: redis.Redis, gate: str
) -> None:
    job = gated.apply_async(kwargs={"gate": gate, "steps": 2}, queue=queue)
    wait_at(redis_client, gate)
    assert ledger.job(job.id)["status"] == "running"  # type: ignore[index]

    doomed_worker.kill()  # main process and children: no task_failure, nobody left to tell
    backdate(job.id, 600)
    result = lifeline.run_once(timeout=300)

    row = ledger.wait_for_status(job.id, "failed", timeout=1)
    assert result.failed == [str(job.id)]
    assert row["failure_reason"].startswith("worker lost")
    last = ledger.events(job.id)[-1]
    assert (last["from_status"], last["to_status"], last["actor"]) == (
        "running",
        "failed",
        "lifeline",
    )
    assert "no heartbeat" in last["message"]


def test_a_job_that_still_heartbeats_is_left_alone(
    worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    job = gated.delay(gate=gate, steps=2)
    wait_at(redis_client, gate)

    result = lifeline.run_once(timeout=300)

    assert result.failed == result.requeued == []
    assert ledger.job(job.id)["status"] == "running"  # type: ignore[index]
    redis_client.rpush(f"jobledger-test:gate:{gate}", 1, 2)
    ledger.wait_for_status(job.id, "succeeded")


def test_a_job_safe_to_retry_is_delivered_again_and_completes(
    doomed_worker: WorkerProcess,
    queue: str,
    worker_logs: Path,
    redis_client: redis.Redis,
    gate: str,
) -> None:
    job = safe_gated.apply_async(kwargs={"gate": gate}, queue=queue)
    assert wait_at(redis_client, gate) == b"1"
    first_task_id = ledger.job(job.id)["celery_task_id"]  # type: ignore[index]

    doomed_worker.kill()
    backdate(job.id, 600)
    result = lifeline.run_once(timeout=300)
    if ON_RABBITMQ:  # its message is back in the queue: it runs again under the same id
        assert result.lost == [str(job.id)]
    else:  # its message waits in Redis's unacked: a new one is published
        assert result.requeued == [str(job.id)]

    rescuer = start_worker(worker_logs, concurrency=1, extra=("-Q", queue))
    try:
        assert wait_at(redis_client, gate) == b"2"  # the second attempt started
        redis_client.rpush(f"jobledger-test:gate:{gate}", 1)
        row = ledger.wait_for_status(job.id, "succeeded")
    finally:
        rescuer.stop()
    assert (row["celery_task_id"] == first_task_id) is ON_RABBITMQ
    assert row["attempts"] == 2
    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert ledger.events(job.id)[2]["actor"] == "lifeline"


def test_a_queued_job_whose_message_never_reached_the_broker_is_failed() -> None:
    job_id = uuid.uuid4()
    ledger_writes.record_queued(
        ledger_writes.NewJob(
            id=job_id, type="example.echo", payload={"value": 1}, celery_task_id=str(job_id)
        )
    )  # recorded, never published: what a publish that failed half-way leaves
    backdate(job_id, 600)

    result = lifeline.run_once(timeout=300)

    assert result.queued_failed == [str(job_id)]
    row = ledger.job(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert "not in the broker" in row["failure_reason"]
    assert ledger.events(job_id)[-1]["actor"] == "lifeline"


def test_a_queued_job_waiting_in_the_broker_is_left_alone(
    redis_client: redis.Redis, queue: str
) -> None:
    try:  # nobody consumes the test's queue here
        job = gated.apply_async(kwargs={"gate": "never"}, queue=queue)
        backdate(job.id, 600)

        result = lifeline.run_once(timeout=300)

        assert result.queued_failed == []
        assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]
    finally:
        delete_queue(queue)


@redis_only
def test_a_queued_job_whose_message_a_worker_is_taking_is_left_alone(
    redis_client: redis.Redis, queue: str
) -> None:
    """A worker takes a message in two round trips (BRPOP from the queue, then HSET into
    ``unacked``): a pass that looks in between finds it nowhere, and looks again."""
    job = gated.apply_async(kwargs={"gate": "never"}, queue=queue)
    backdate(job.id, 600)  # waited longer than the timeout behind a backlog
    # the worker's BRPOP (from whichever priority level's list holds it): in neither place
    message = next(filter(None, (redis_client.rpop(key) for key in redis_keys([queue]))), None)
    assert message is not None
    reservation = json.dumps([json.loads(message), "", queue])
    # the worker's second round trip lands while the pass is running
    reserve = threading.Timer(0.3, redis_client.hset, ("unacked", "in-transit", reservation))
    reserve.start()
    try:
        result = lifeline.run_once(timeout=300)
    finally:
        reserve.join()
        redis_client.hdel("unacked", "in-transit")

    assert result.queued_failed == []
    assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]


def test_recent_queued_and_running_jobs_are_not_looked_at() -> None:
    job_id = uuid.uuid4()
    ledger_writes.record_queued(
        ledger_writes.NewJob(id=job_id, type="example.echo", payload={"value": 1})
    )

    result = lifeline.run_once(timeout=300)

    assert result.queued_failed == result.failed == []
    assert ledger.job(job_id)["status"] == "queued"  # type: ignore[index]


def test_a_job_of_a_worker_that_no_longer_answers_pings_is_failed_sooner(
    doomed_worker: WorkerProcess, queue: str, redis_client: redis.Redis, gate: str
) -> None:
    job = gated.apply_async(kwargs={"gate": gate, "steps": 2}, queue=queue)
    wait_at(redis_client, gate)
    doomed_worker.kill()
    backdate(job.id, 60)  # silent for a minute: well inside the 300 s timeout

    assert lifeline.run_once(timeout=300).failed == []  # heartbeat alone: not yet
    result = lifeline.run_once(timeout=300, ping=True)

    assert result.failed == [str(job.id)]
    assert result.silent_workers == [doomed_worker.name]
    assert ledger.job(job.id)["failure_reason"].startswith("worker lost")  # type: ignore[index]


def _chain_between_steps(queue: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A running chained job, silent for 10 minutes, step 1 done and step 2 queued."""
    job_id, step_id = uuid.uuid4(), uuid.uuid4()
    with db.engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, name, type, status, payload, queue, attempts, created_at, "
                "started_at, updated_at, heartbeat_at) VALUES (:id, :name, 'sync_and_suggest', "
                "'running', '{}', :queue, 1, now() - interval '20 minutes', "
                "now() - interval '20 minutes', now() - interval '10 minutes', "
                "now() - interval '10 minutes')"
            ),
            {"id": str(job_id), "name": f"c{job_id.hex[:10]}", "queue": queue},
        )
        connection.execute(
            text(
                "INSERT INTO job_steps (id, job_id, position, step_type, status, celery_task_id) "
                "VALUES (:s1, :id, 1, 'sync', 'succeeded', :s1), "
                "(:s2, :id, 2, 'suggest', 'queued', :s2)"
            ),
            {"id": str(job_id), "s1": str(uuid.uuid4()), "s2": str(step_id)},
        )
    return job_id, step_id


def test_a_chain_whose_next_step_waits_in_the_broker_is_not_orphaned(
    queue: str, redis_client: redis.Redis
) -> None:
    job_id, step_id = _chain_between_steps(queue)
    try:
        app.send_task("suggest", kwargs={"budget_id": "b"}, task_id=str(step_id), queue=queue)

        assert lifeline.run_once(timeout=300).failed == []
        assert ledger.job(job_id)["status"] == "running"  # type: ignore[index]
    finally:
        delete_queue(queue)


def test_a_chain_between_steps_whose_next_message_is_gone_is_failed(queue: str) -> None:
    job_id, _ = _chain_between_steps(queue)

    assert lifeline.run_once(timeout=300).failed == [str(job_id)]
