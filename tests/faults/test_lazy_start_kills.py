"""Pool processes SIGKILLed around the lazy start (app.ledger.runtime.lazy_start), with
real ``celery -A app worker`` processes: killed before the start was written, the job
stays ``queued``/``retrying`` with a valid history, its lost execution is counted, its
message comes back and it finishes once; a message that kills its process every time is
still failed after ``JOBLEDGER_MAX_LOST_EXECUTIONS``; killed just after the start was
written, it behaves as it always did.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.config import settings
from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.faults.test_lost_executions import REDELIVERED_ONCE
from tests.support import ledger
from tests.support.brokers import delete_queue
from tests.support.faults import release, start_fault_worker, wait_announced, wait_until
from tests.support.jobs import quiet, suicide

pytestmark = pytest.mark.fault

#: Longer than any of these tests: a start these workers take stays pending until the
#: body writes something or finishes.
NEVER = {"JOBLEDGER_LAZY_START_SECONDS": "600"}


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"jobledger-test-lazy-kill-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def test_a_pool_process_killed_before_its_start_was_written_runs_the_job_again_once(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = start_fault_worker(worker_logs, queue, concurrency=1, env=NEVER)
    gate = uuid.uuid4().hex
    try:
        job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        attempt, pid = wait_announced(redis_client, gate)
        assert attempt == 1
        assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]

        os.kill(pid, signal.SIGKILL)

        again, second_pid = wait_announced(redis_client, gate)  # delivered again
        assert (again, second_pid != pid) == (2, True)
        lost = ledger.job(job.id)
        assert lost is not None
        # the loss is counted, as a valid walk, while the second start is pending
        assert (lost["status"], lost["attempts"], lost["lost_executions"]) == ("retrying", 1, 1)
        assert lost["worker_pid"] == pid
        assert ledger.has_valid_history(job.id)
        release(redis_client, gate)
        row = ledger.wait_for_status(job.id, "succeeded")
    finally:
        stop_worker(worker)

    assert_sound_ledger({job.id})
    assert ledger.transitions(job.id) == REDELIVERED_ONCE
    assert (row["attempts"], row["lost_executions"], row["result"]) == (2, 1, {"attempt": 2})
    events = ledger.events(job.id)
    assert row["started_at"] == events[1]["created_at"] <= events[2]["created_at"]
    assert [e["attempt"] for e in events[1:]] == [1, 1, 2, 2]
    assert sum(e["to_status"] == "succeeded" for e in events) == 1


def test_a_message_that_kills_its_process_before_any_start_is_written_fails_after_the_limit(
    worker_logs: Path, queue: str
) -> None:
    worker = start_fault_worker(worker_logs, queue, concurrency=1, env=NEVER)
    try:
        job = suicide.apply_async(queue=queue)
        row = ledger.wait_for_status(job.id, "failed", timeout=120)
    finally:
        stop_worker(worker)

    limit = settings().max_lost_executions
    assert_sound_ledger({job.id})
    assert (row["attempts"], row["lost_executions"]) == (limit, limit)
    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "retrying"),
        ("retrying", "failed"),
    ]
    assert f"died in each of {limit} executions" in row["failure_reason"]


def test_a_pool_process_killed_just_after_its_start_was_written_behaves_as_before(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = start_fault_worker(
        worker_logs, queue, concurrency=1, env={"JOBLEDGER_LAZY_START_SECONDS": "0.2"}
    )
    gate = uuid.uuid4().hex
    try:
        job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        _, pid = wait_announced(redis_client, gate)
        running = ledger.wait_for_status(job.id, "running")  # the timer wrote it
        assert running["worker_pid"] == pid

        os.kill(pid, signal.SIGKILL)

        again, _ = wait_announced(redis_client, gate)
        assert again == 2
        wait_until(
            lambda: (ledger.job(job.id) or {}).get("lost_executions") == 1,
            30,
            "the lost execution recorded",
        )
        release(redis_client, gate)
        row = ledger.wait_for_status(job.id, "succeeded")
    finally:
        stop_worker(worker)

    assert_sound_ledger({job.id})
    assert ledger.transitions(job.id) == REDELIVERED_ONCE
    assert (row["attempts"], row["lost_executions"]) == (2, 1)
    assert row["started_at"] == running["started_at"]
