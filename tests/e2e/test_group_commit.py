"""The worker's group commit with real workers (app.ledger.runtime.group_commit,
app.ledger.runtime.outcome_writer): quick jobs' outcomes are written by the main
process, several per transaction (``xmin``), their messages acknowledged after it; a
cancel made while an outcome waits keeps the job canceled; connections dropped while
outcomes wait are replaced; ``JOBLEDGER_GROUP_COMMIT=false`` writes each job from its
pool process. Checked with SQL on the ledger.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from app import db
from app.ledger.operations import actions as operations
from tests.e2e.test_lazy_start import LONG, writers
from tests.support import ledger
from tests.support.brokers import delete_queue
from tests.support.faults import wait_until
from tests.support.jobs import quick
from tests.support.processes import WorkerProcess, start_worker

SIMPLE = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"jobledger-test-group-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def group_worker(
    worker_logs: Path, queue: str, *, concurrency: int = 2, **settings: str
) -> WorkerProcess:
    """A worker of the test's own queue whose lazy starts stay pending (every job is a
    quick one), with ``JOBLEDGER_…`` ``settings``."""
    env = {
        **os.environ,
        "JOBLEDGER_LAZY_START_SECONDS": LONG,
        **{f"JOBLEDGER_{name.upper()}": value for name, value in settings.items()},
    }
    return start_worker(worker_logs, concurrency=concurrency, queue=queue, env=env)


def log_lines(job_id: str) -> list[dict[str, str]]:
    """The job's log lines (level, message), in order."""
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT level, message FROM job_logs WHERE job_id = :id ORDER BY id"),
            {"id": job_id},
        ).mappings()
        return [dict(row) for row in rows]


def finished_in_pool(worker: WorkerProcess, job_id: str) -> bool:
    """Whether the pool process logged the job's body done (Celery's success line)."""
    return f"[{job_id}] succeeded in" in worker.log()


def test_quick_jobs_finishing_together_are_written_in_one_transaction(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = group_worker(worker_logs, queue, group_commit_wait="1")
    try:
        results = [quick.apply_async(kwargs={"value": n}, queue=queue) for n in range(10)]
        rows = [ledger.wait_for_status(r.id, "succeeded") for r in results]
    finally:
        worker.stop()

    transactions = []
    for n, (result, row) in enumerate(zip(results, rows, strict=True)):
        assert ledger.transitions(result.id) == SIMPLE
        assert ledger.has_valid_history(result.id)
        wrote = writers(result.id)
        assert set(wrote["events"]) == {wrote["row"]}, wrote  # start, outcome, row: one
        transactions.append(wrote["row"])
        events = ledger.events(result.id)
        assert row["started_at"] == events[1]["created_at"] <= row["completed_at"]
        assert events[2]["created_at"] == row["completed_at"]
        assert (row["attempts"], row["result"], row["queue"]) == (1, {"value": n}, queue)
        assert all(row[column] for column in ("worker", "worker_pid", "execution_id"))
    # ten jobs within a second of one another: fewer transactions than jobs
    assert len(set(transactions)) < len(results), transactions
    # every message was acknowledged after its write: none came back to the queue
    assert redis_client.llen(queue) == 0
    assert not any(
        any(r.id.encode() in raw for r in results) for raw in redis_client.hvals("unacked")
    )


def test_without_group_commit_each_pool_process_writes_its_own_jobs(
    worker_logs: Path, queue: str
) -> None:
    worker = group_worker(worker_logs, queue, group_commit="false", group_commit_wait="1")
    try:
        results = [quick.apply_async(kwargs={"value": n}, queue=queue) for n in range(6)]
        for result in results:
            ledger.wait_for_status(result.id, "succeeded")
    finally:
        worker.stop()

    transactions = [writers(r.id)["row"] for r in results]
    assert len(set(transactions)) == len(results)
    assert all(ledger.transitions(r.id) == SIMPLE for r in results)


def test_a_cancel_made_while_the_outcome_waits_keeps_the_job_canceled(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    worker = group_worker(worker_logs, queue, concurrency=1, group_commit_wait="4")
    try:
        job = quick.apply_async(kwargs={"value": 7}, queue=queue)
        wait_until(lambda: finished_in_pool(worker, job.id), 30, "body done")
        assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]

        operations.cancel(job.id, actor="api", reason="not wanted")
        assert ledger.job(job.id)["status"] == "canceled"  # type: ignore[index]

        noted = wait_until(
            lambda: [
                line for line in log_lines(job.id) if "could not be recorded" in line["message"]
            ],
            30,
            "the refused outcome noted",
        )
        later = quick.apply_async(kwargs={"value": 8}, queue=queue)
        ledger.wait_for_status(later.id, "succeeded")
    finally:
        worker.stop()

    row = ledger.job(job.id)
    assert row is not None
    assert (row["status"], row["result"], row["attempts"]) == ("canceled", None, 0)
    assert ledger.transitions(job.id) == [(None, "queued"), ("queued", "canceled")]
    assert ledger.has_valid_history(job.id)
    assert noted[0]["level"] == "warning"
    assert "it finished, but its start and result could not be recorded" in noted[0]["message"]
    assert redis_client.llen(queue) == 0  # acknowledged, not delivered again


def test_connections_dropped_while_outcomes_wait_are_replaced(
    worker_logs: Path, queue: str
) -> None:
    worker = group_worker(worker_logs, queue, concurrency=1, group_commit_wait="2")
    try:
        first = quick.apply_async(kwargs={"value": 1}, queue=queue)
        ledger.wait_for_status(first.id, "succeeded")  # the writer holds its connection
        second = quick.apply_async(kwargs={"value": 2}, queue=queue)
        wait_until(lambda: finished_in_pool(worker, second.id), 30, "body done")
        with db.engine().connect() as connection:
            dropped = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
            ).scalar_one()
        db.reset()  # this process's pooled connections were dropped too
        assert dropped >= 2  # at least the pool process's and the writer's
        row = ledger.wait_for_status(second.id, "succeeded")
    finally:
        worker.stop()

    assert row["result"] == {"value": 2}
    assert ledger.transitions(second.id) == SIMPLE
