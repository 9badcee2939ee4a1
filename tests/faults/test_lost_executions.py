"""Nothing lost, nothing stuck, nothing doubled, with real ``celery -A app worker``
processes: a message that kills its process every time ends ``failed`` after a bounded
number of lost executions; a SIGKILLed worker's reserved messages go back to the queue
in one lifeline pass; a second copy of a running job's message does not run its body
while the first execution lives.

Time is moved the way the lifeline tests move it (back-dated reservation times in
Redis), never waited for.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from app import db
from app.config import settings
from app.ledger.operations import lifeline
from app.ledger.rules.states import TERMINAL, JobStatus, is_valid_walk
from app.queues import waiting
from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.support import ledger
from tests.support.brokers import ON_RABBITMQ, delete_queue, queue_length, redis_only
from tests.support.faults import (
    hold,
    release,
    start_fault_worker,
    wait_announced,
    wait_until,
)
from tests.support.jobs import echo, flaky, gate_key, pair_suicide, suicide
from tests.support.processes import WorkerProcess

pytestmark = pytest.mark.fault

REDELIVERED_ONCE = [
    (None, "queued"),
    ("queued", "running"),
    ("running", "retrying"),
    ("retrying", "running"),
    ("running", "succeeded"),
]


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-lost-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def unacked_of(client: redis.Redis, job_ids: set[str]) -> dict[bytes, str]:
    """Delivery tag -> task id of the reserved (unacknowledged) messages of ``job_ids``."""
    found = {}
    for tag, raw in client.hgetall("unacked").items():
        task_id = json.loads(raw)[0]["headers"]["id"]
        if task_id in job_ids:
            found[tag] = task_id
    return found


def acknowledged(
    client: redis.Redis, queue: str, worker: WorkerProcess, job_ids: set[str] | None = None
) -> bool:
    """Whether every message in ``queue`` (of ``job_ids``, or any) was acknowledged.
    Redis: none is reserved (``unacked``) or waiting. RabbitMQ: the queue is empty and
    the worker holds nothing (an unacknowledged message is held by its consumer or back
    in its queue)."""
    if ON_RABBITMQ:
        return queue_length(queue) == 0 and worker.is_idle()
    reserved = client.hlen("unacked") if job_ids is None else unacked_of(client, job_ids)
    return not reserved and not waiting(client, queue)


def steps_of(job_id: str) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM job_steps WHERE job_id = :id ORDER BY position"), {"id": job_id}
        ).mappings()
        return [dict(row) for row in rows]


def backdate_reservations(client: redis.Redis, seconds: float) -> None:
    """Move every reservation's delivery time ``seconds`` into the past."""
    for tag, score in client.zrange("unacked_index", 0, -1, withscores=True):
        client.zadd("unacked_index", {tag: score - seconds})


# -- item 9: poison messages -------------------------------------------------------------


def test_a_job_that_kills_its_process_every_time_fails_after_three_lost_executions(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        job = suicide.apply_async(queue=queue)
        row = ledger.wait_for_status(job.id, "failed", timeout=120)
        wait_until(
            lambda: acknowledged(redis_client, queue, worker, {job.id}),
            30,
            "the poison message acknowledged",
        )
        after = echo.apply_async(kwargs={"value": 1}, queue=queue)  # the worker goes on
        ledger.wait_for_status(after.id, "succeeded")
    finally:
        stop_worker(worker)

    assert_sound_ledger({job.id, after.id})
    limit = settings().max_lost_executions
    assert limit == 3
    starts = [e for e in ledger.events(job.id) if e["to_status"] == "running"]
    assert len(starts) == limit
    assert row["attempts"] == limit
    assert row["lost_executions"] == limit
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
    assert "died in each of 3 executions" in row["failure_reason"]
    assert "jobledger retry" in row["failure_reason"]


def test_a_chain_step_that_kills_its_process_every_time_fails_the_chain(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        job = pair_suicide.apply_async(kwargs={"value": 1}, queue=queue)
        row = ledger.wait_for_status(job.id, "failed", timeout=120)
        wait_until(
            lambda: acknowledged(redis_client, queue, worker),
            30,
            "the poison step's message acknowledged",
        )
    finally:
        stop_worker(worker)

    events = ledger.events(job.id)
    keys = Counter((e["step_id"], e["from_status"], e["to_status"], e["attempt"]) for e in events)
    assert max(keys.values()) == 1, keys  # no transition recorded twice
    for step_id in {e["step_id"] for e in events}:
        walk = [
            (
                None if e["from_status"] is None else JobStatus(e["from_status"]),
                JobStatus(e["to_status"]),
            )
            for e in events
            if e["step_id"] == step_id
        ]
        assert is_valid_walk(walk), (step_id, walk)
    first, second = steps_of(job.id)
    assert (first["status"], first["attempts"], first["lost_executions"]) == ("failed", 3, 3)
    assert second["status"] == "canceled"
    assert row["failure_reason"].startswith("step 1 failed: its worker process died in each")
    step_moves = [
        (e["from_status"], e["to_status"])
        for e in ledger.events(job.id)
        if str(e["step_id"]) == str(first["id"])
    ]
    assert step_moves == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "retrying"),
        ("retrying", "failed"),
    ]


def test_a_celery_retry_is_not_taken_for_a_second_copy(worker: WorkerProcess) -> None:
    """A retry's message (same task id) can reach the other pool process at once: the
    job is already ``retrying`` then, so it runs, and is not deferred as a copy."""
    result = flaky.delay(2)
    row = ledger.wait_for_status(result.id, "succeeded")
    assert row["attempts"] == 3
    assert row["lost_executions"] == 0
    assert f"job {result.id} not run" not in worker.log()


# -- item 11: a dead worker's reservations -----------------------------------------------


@redis_only
def test_a_sigkilled_worker_s_reservations_go_back_to_the_queue_in_one_lifeline_pass(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """One pool process, prefetch 4: the held job runs and three echoes wait reserved in
    the worker (Redis ``unacked``) while the rest wait in the queue. The whole worker is
    SIGKILLed; one lifeline pass gives every reservation back; a new worker finishes
    every job, the held one as its second execution."""
    gate = uuid.uuid4().hex
    first = start_fault_worker(worker_logs, queue, concurrency=1)
    held = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    echoes = [echo.apply_async(kwargs={"value": n}, queue=queue).id for n in range(8)]
    published = {held.id, *echoes}
    try:
        assert wait_announced(redis_client, gate)[0] == 1
        wait_until(lambda: len(unacked_of(redis_client, published)) == 4, 30, "4 messages reserved")
        first.kill()
    finally:
        stop_worker(first)
    reserved = set(unacked_of(redis_client, published).values())
    assert held.id in reserved
    assert {ledger.job(j)["status"] for j in reserved - {held.id}} == {"queued"}  # type: ignore[index]

    backdate_reservations(redis_client, 600)
    result = lifeline.run_once()

    assert sorted(result.restored) == sorted(reserved)
    assert result.lost == [held.id]
    assert not unacked_of(redis_client, published)
    second = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        assert wait_announced(redis_client, gate)[0] == 2
        release(redis_client, gate)
        for job_id in published:
            ledger.wait_for_status(job_id, *TERMINAL, timeout=60)
    finally:
        stop_worker(second)

    rows = {str(r["id"]): r for r in assert_sound_ledger(published)}
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert ledger.transitions(held.id) == REDELIVERED_ONCE
    assert ledger.events(held.id)[2]["actor"] == "lifeline"
    assert all(rows[j]["attempts"] == 1 for j in echoes)


@redis_only
def test_a_live_worker_s_reservations_are_left_alone_by_the_lifeline(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    gate = uuid.uuid4().hex
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        held = hold.apply_async(kwargs={"gate": gate}, queue=queue)
        echoes = [echo.apply_async(kwargs={"value": n}, queue=queue).id for n in range(3)]
        published = {held.id, *echoes}
        wait_announced(redis_client, gate)
        wait_until(lambda: len(unacked_of(redis_client, published)) == 4, 30, "4 messages reserved")
        backdate_reservations(redis_client, 600)  # reserved long ago: still held

        result = lifeline.run_once()

        assert result.restored == result.lost == []
        assert len(unacked_of(redis_client, published)) == 4
        assert waiting(redis_client, queue) == 0
        release(redis_client, gate)
        for job_id in published:
            ledger.wait_for_status(job_id, "succeeded")
    finally:
        stop_worker(worker)
    rows = assert_sound_ledger(published)
    assert all(row["attempts"] == 1 for row in rows)


# -- item 13: the same message delivered twice at once -----------------------------------


def _duplicate_while_running(
    worker: WorkerProcess, redis_client: redis.Redis, queue: str, gate: str
) -> tuple[str, int]:
    """Start a held job, push a copy of its message while it runs, and wait until the copy
    was refused. Returns the job id and the pid of the first execution."""
    job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    attempt, pid = wait_announced(redis_client, gate)
    assert attempt == 1
    (raw,) = (v for v in redis_client.hvals("unacked") if job.id.encode() in v)
    redis_client.lpush(queue, json.dumps(json.loads(raw)[0]))  # a second delivery, now
    wait_until(lambda: f"job {job.id} not run: execution" in worker.log(), 60, "the copy refused")
    assert redis_client.llen(gate_key(gate) + ":at") == 0  # the body did not start twice
    return job.id, pid


@redis_only
def test_a_second_delivery_does_not_run_while_the_first_execution_lives(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    gate = uuid.uuid4().hex
    worker = start_fault_worker(worker_logs, queue, concurrency=2)
    try:
        job_id, _ = _duplicate_while_running(worker, redis_client, queue, gate)
        assert ledger.job(job_id)["attempts"] == 1  # type: ignore[index]
        release(redis_client, gate)
        ledger.wait_for_status(job_id, "succeeded")
        wait_until(  # the deferred copy comes back and is dropped
            lambda: f"job {job_id} not run: job is already succeeded" in worker.log(),
            60,
            "the deferred copy dropped",
        )
    finally:
        stop_worker(worker)
    assert_sound_ledger({job_id})
    assert ledger.job(job_id)["attempts"] == 1  # type: ignore[index]
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert redis_client.llen(gate_key(gate) + ":at") == 0


@redis_only
def test_a_deferred_copy_leaves_the_job_finished_when_the_first_execution_dies(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """The first execution's pool process is SIGKILLed after the copy was refused. The
    worker's main process records the loss, so the next delivery runs at once although
    the dead execution's heartbeat still looks fresh. Which message that is depends on
    timing: the first one put back (reject on worker lost), or the deferred copy — the
    acknowledged copy shared the first one's delivery tag, which is how kombu keys a
    reservation, so its ack may have removed the first one's reservation."""
    gate = uuid.uuid4().hex
    worker = start_fault_worker(worker_logs, queue, concurrency=2)
    try:
        job_id, pid = _duplicate_while_running(worker, redis_client, queue, gate)
        os.kill(pid, signal.SIGKILL)
        assert wait_announced(redis_client, gate)[0] == 2
        release(redis_client, gate)
        ledger.wait_for_status(job_id, "succeeded")
        wait_until(  # the first message and the deferred copy: one ran, the other dropped
            lambda: not unacked_of(redis_client, {job_id}) and not waiting(redis_client, queue),
            60,
            "no message of the job left",
        )
    finally:
        stop_worker(worker)
    rows = assert_sound_ledger({job_id})
    assert rows[0]["attempts"] == 2
    assert rows[0]["lost_executions"] == 1
    assert ledger.transitions(job_id) == REDELIVERED_ONCE
    assert "worker lost" in ledger.events(job_id)[2]["message"]
