"""The lazy start with real workers (app.ledger.runtime.lazy_start): a quick job's start
and outcome are one transaction; a longer job shows ``running`` once the delay passed;
a cancel made before the start still stops the body; the lifeline leaves a pending
start alone. Checked with SQL on the ledger (``xmin``: the transaction that wrote a row).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from app import db
from app.ledger.operations import actions as operations
from app.ledger.operations import lifeline
from tests.support import ledger
from tests.support.faults import release, wait_announced, wait_until
from tests.support.jobs import gil_bound, quick, quiet
from tests.support.processes import WorkerProcess, start_worker

#: A delay no test outlasts: every start these workers take stays pending until the
#: body writes something or finishes.
LONG = "600"


def lazy_worker(worker_logs: Path, queue: str, delay: str) -> WorkerProcess:
    """A worker of the test's own queue with ``JOBLEDGER_LAZY_START_SECONDS=delay``."""
    env = {**os.environ, "JOBLEDGER_LAZY_START_SECONDS": delay}
    return start_worker(worker_logs, concurrency=1, queue=queue, env=env)


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    name = f"jobledger-test-lazy-{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)


def writers(job_id: str) -> dict[str, Any]:
    """The transactions (``xmin``) that wrote the job's row and its events after
    ``queued``, and how many log lines and files it has."""
    with db.engine().connect() as connection:
        row_xmin = connection.execute(
            text("SELECT xmin::text FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
        event_xmins = [
            r[0]
            for r in connection.execute(
                text(
                    "SELECT xmin::text FROM job_events WHERE job_id = :id "
                    "AND from_status IS NOT NULL ORDER BY id"
                ),
                {"id": job_id},
            )
        ]
        logs = connection.execute(
            text("SELECT count(*) FROM job_logs WHERE job_id = :id"), {"id": job_id}
        ).scalar_one()
    return {"row": row_xmin, "events": event_xmins, "logs": logs}


def test_a_quick_job_writes_its_start_and_outcome_in_one_transaction(
    worker_logs: Path, queue: str
) -> None:
    worker = lazy_worker(worker_logs, queue, LONG)
    try:
        results = [quick.apply_async(kwargs={"value": n}, queue=queue) for n in range(5)]
        rows = [ledger.wait_for_status(r.id, "succeeded") for r in results]
    finally:
        worker.stop()

    for result, row in zip(results, rows, strict=True):
        assert ledger.transitions(result.id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
        assert ledger.has_valid_history(result.id)
        wrote = writers(result.id)
        # one transaction wrote both events and the row as it is now, and nothing else
        assert len(wrote["events"]) == 2
        assert set(wrote["events"]) == {wrote["row"]}, wrote
        assert wrote["logs"] == 0
        events = ledger.events(result.id)
        assert row["started_at"] == events[1]["created_at"]  # the true start
        assert row["created_at"] <= row["started_at"] <= row["completed_at"]
        assert events[2]["created_at"] == row["completed_at"]
        assert (row["attempts"], row["worker_pid"], row["result"]) == (
            1,
            row["worker_pid"],
            {"value": results.index(result)},
        )
        assert row["worker"]
        assert row["execution_id"]
        assert row["queue"] == queue


def test_a_job_still_running_after_the_delay_is_running_in_the_ledger(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = lazy_worker(worker_logs, queue, "0.2")
    gate = uuid.uuid4().hex
    try:
        job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        attempt, pid = wait_announced(redis_client, gate)
        # the body writes nothing: only the lazy start's timer can make it running
        row = ledger.wait_for_status(job.id, "running", timeout=30)
        assert (attempt, row["attempts"], row["worker_pid"]) == (1, 1, pid)
        release(redis_client, gate)
        done = ledger.wait_for_status(job.id, "succeeded")
    finally:
        worker.stop()

    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    events = ledger.events(job.id)
    assert done["started_at"] == events[1]["created_at"] == row["started_at"]
    assert done["started_at"] < done["heartbeat_at"] <= done["completed_at"]
    wrote = writers(job.id)
    assert wrote["events"][0] != wrote["events"][1]  # the start was written on its own


def test_a_job_canceled_before_its_start_never_runs_its_body(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    gate = uuid.uuid4().hex
    job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)  # no worker yet
    assert operations.cancel(job.id, actor="cli").outcome == "canceled"
    after = quick.apply_async(queue=queue)

    worker = lazy_worker(worker_logs, queue, "0.2")
    try:
        ledger.wait_for_status(after.id, "succeeded")
    finally:
        worker.stop()

    assert redis_client.llen(f"jobledger-test:gate:{gate}:at") == 0  # the body never ran
    assert ledger.transitions(job.id) == [(None, "queued"), ("queued", "canceled")]
    row = ledger.job(job.id)
    assert row is not None
    assert (row["attempts"], row["started_at"]) == (0, None)


def test_a_cancel_while_the_start_is_pending_wins_and_the_result_is_not_recorded(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """The ledger said ``queued``, so the cancel took the job at once; the body, already
    running, finishes: its start and result are not written over the cancel, and a
    warning line on the job says so."""
    worker = lazy_worker(worker_logs, queue, LONG)
    gate = uuid.uuid4().hex
    try:
        job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        wait_announced(redis_client, gate)
        assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]
        assert operations.cancel(job.id, actor="cli").outcome == "canceled"
        release(redis_client, gate)
        wait_until(
            lambda: ledger.count(
                "SELECT count(*) FROM job_logs WHERE job_id = :id", id=str(job.id)
            ),
            30,
            "the unrecorded finish noted",
        )
    finally:
        worker.stop()

    assert ledger.transitions(job.id) == [(None, "queued"), ("queued", "canceled")]
    row = ledger.job(job.id)
    assert row is not None
    assert (row["status"], row["result"], row["started_at"]) == ("canceled", None, None)
    with db.engine().connect() as connection:
        line = connection.execute(
            text("SELECT level, message FROM job_logs WHERE job_id = :id"), {"id": job.id}
        ).one()
    assert line[0] == "warning"
    assert "could not be recorded" in line[1]


def test_a_lifeline_pass_leaves_a_pending_start_alone(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = lazy_worker(worker_logs, queue, LONG)
    gate = uuid.uuid4().hex
    try:
        job = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        wait_announced(redis_client, gate)
        wait_until(
            lambda: ledger.count(
                "SELECT count(*) FROM jobs WHERE id = :id AND updated_at < now()", id=str(job.id)
            ),
            10,
            "the queued row older than the timeout",
        )

        passed = lifeline.run_once(timeout=0.000001)

        assert str(job.id) not in passed.queued_failed + passed.failed + passed.lost
        assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]
        release(redis_client, gate)
        ledger.wait_for_status(job.id, "succeeded")
    finally:
        worker.stop()
    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    wrote = writers(job.id)
    assert set(wrote["events"]) == {wrote["row"]}


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_the_lazy_start_works_on_the_threads_and_solo_pools(
    worker_logs: Path, queue: str, redis_client: redis.Redis, pool: str
) -> None:
    env = {**os.environ, "JOBLEDGER_LAZY_START_SECONDS": "0.2"}
    worker = start_worker(worker_logs, concurrency=2, queue=queue, env=env, extra=("-P", pool))
    gate = uuid.uuid4().hex
    try:
        assert {"threads": "(thread)", "solo": "(solo)"}[pool] in worker.log()  # its banner
        long = quiet.apply_async(kwargs={"gate": gate}, queue=queue)
        wait_announced(redis_client, gate)
        ledger.wait_for_status(long.id, "running", timeout=30)  # the timer wrote it
        quick_ones = [quick.apply_async(kwargs={"value": n}, queue=queue) for n in range(3)]
        if pool == "threads":  # the second thread runs them while the first is held
            for result in quick_ones:
                ledger.wait_for_status(result.id, "succeeded")
        release(redis_client, gate)
        ledger.wait_for_status(long.id, "succeeded")
        for result in quick_ones:
            ledger.wait_for_status(result.id, "succeeded")
    finally:
        worker.stop()

    assert ledger.has_valid_history(long.id)
    for result in quick_ones:
        assert ledger.transitions(result.id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
        row = ledger.job(result.id)
        assert row is not None
        assert row["started_at"] <= row["completed_at"]


def test_a_body_killed_at_its_hard_limit_before_its_start_was_written_fails_from_running(
    worker_logs: Path, queue: str
) -> None:
    """The body held the GIL from its first moment, so the timer thread never wrote its
    start; the worker's main process writes it (dated when the process took the
    message) before it records the hard time limit."""
    worker = lazy_worker(worker_logs, queue, "0.2")
    try:
        job = gil_bound.apply_async(queue=queue, time_limit=2, soft_time_limit=1)
        row = ledger.wait_for_status(job.id, "failed", timeout=60)
    finally:
        worker.stop()

    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    assert row["failure_reason"].startswith("timed out after 2 s (hard time limit")
    assert row["created_at"] <= row["started_at"] <= row["completed_at"]
    assert row["attempts"] == 1
