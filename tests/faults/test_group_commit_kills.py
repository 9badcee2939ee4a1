"""The worker killed around its group commit (app.ledger.runtime.outcome_writer), with
real ``celery -A app worker`` processes: killed after the pool process handed a quick
job's outcome and before the main process wrote it, the job stays ``queued``, its
message (never acknowledged) is delivered again and the job finishes once, its history
one valid walk; SIGTERM (a warm shutdown) while outcomes wait loses none of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.support import ledger
from tests.support.brokers import delete_queue
from tests.support.faults import WorkerProcess, start_fault_worker, wait_until
from tests.support.jobs import quick

pytestmark = pytest.mark.fault

#: Every start stays pending (each job here is a quick one); outcomes wait 30 s to be
#: written, far longer than the moment the test needs to act.
WAITING = {"JOBLEDGER_LAZY_START_SECONDS": "600", "JOBLEDGER_GROUP_COMMIT_WAIT": "30"}
#: The unacknowledged message of a killed worker comes back after 5 s (Redis; RabbitMQ
#: gives it back when the connection drops).
REDELIVER_SOON = {
    "visibility_timeout": 5,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
SIMPLE = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"jobledger-test-group-kill-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def _bodies_done(worker: WorkerProcess, queue: str) -> list[AsyncResult]:
    """Three quick jobs sent to ``queue``, once each body has run in ``worker``'s pool."""
    jobs = [quick.apply_async(kwargs={"value": n}, queue=queue) for n in range(3)]
    wait_until(
        lambda: all(f"[{job.id}] succeeded in" in worker.log() for job in jobs),
        30,
        "every body done in the pool",
    )
    return jobs


def _finished_by_a_second_worker(
    worker_logs: Path, queue: str, jobs: list[AsyncResult]
) -> tuple[WorkerProcess, list[dict[str, Any]]]:
    """A second worker on ``queue``, stopped once every job succeeded; it and the rows."""
    second = start_fault_worker(
        worker_logs,
        queue,
        concurrency=2,
        env={"JOBLEDGER_LAZY_START_SECONDS": "600"},
        transport_options=REDELIVER_SOON,
    )
    try:
        rows = [ledger.wait_for_status(job.id, "succeeded", timeout=60) for job in jobs]
    finally:
        stop_worker(second)
    assert_sound_ledger({job.id for job in jobs})
    return second, rows


def test_a_worker_killed_before_its_outcomes_were_written_runs_them_again_once(
    worker_logs: Path, queue: str
) -> None:
    first = start_fault_worker(
        worker_logs, queue, concurrency=2, env=WAITING, transport_options=REDELIVER_SOON
    )
    try:
        jobs = _bodies_done(first, queue)
        assert {ledger.job(job.id)["status"] for job in jobs} == {"queued"}  # type: ignore[index]
        first.kill()  # main process and children: the outcomes were never written
    finally:
        stop_worker(first)
    assert {ledger.job(job.id)["status"] for job in jobs} == {"queued"}  # type: ignore[index]

    _, rows = _finished_by_a_second_worker(worker_logs, queue, jobs)
    for n, (job, row) in enumerate(zip(jobs, rows, strict=True)):
        assert ledger.transitions(job.id) == SIMPLE  # the killed execution left no trace
        assert (row["attempts"], row["lost_executions"], row["result"]) == (1, 0, {"value": n})
        assert row["worker"] != first.name


def test_a_warm_shutdown_while_outcomes_wait_loses_none(worker_logs: Path, queue: str) -> None:
    first = start_fault_worker(
        worker_logs, queue, concurrency=2, env=WAITING, transport_options=REDELIVER_SOON
    )
    try:
        jobs = _bodies_done(first, queue)
    finally:
        stop_worker(first)  # SIGTERM: Celery's warm shutdown

    second, rows = _finished_by_a_second_worker(worker_logs, queue, jobs)
    for n, (job, row) in enumerate(zip(jobs, rows, strict=True)):
        assert ledger.transitions(job.id) == SIMPLE
        assert (row["attempts"], row["result"]) == (1, {"value": n})
        # written by the worker that ran them, before it exited (not 30 s later, not by
        # the next worker, which at most finds the job finished and does not run it)
        assert row["worker"] == first.name
        assert f"[{job.id}] succeeded in" not in second.log()
