"""Queues per job type through real workers: a worker started with ``-Q export`` takes
only export jobs, the default worker every queue, and the ledger records the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db, queues
from app.celery import app
from tests.support import ledger
from tests.support.controls import exported, routed_pair
from tests.support.jobs import echo
from tests.support.processes import STARTED, WorkerProcess, start_worker


@pytest.fixture
def export_worker(worker: WorkerProcess, worker_logs: Path) -> Iterator[WorkerProcess]:
    """A worker of the test's own on ``-Q export``; the session's workers stop consuming
    ``export`` meanwhile (Celery's ``cancel_consumer``), so only it may take export jobs."""
    others = [w for w in STARTED if w.process.poll() is None]
    for other in others:
        app.control.cancel_consumer("export", destination=[other.name], reply=True, timeout=5)
    own = start_worker(worker_logs, concurrency=1, queue="export")
    yield own
    own.stop()
    for other in others:
        if other.process.poll() is None:
            other.consume("export")


def test_a_worker_without_q_consumes_every_queue(worker: WorkerProcess) -> None:
    answer = app.control.inspect(destination=[worker.name], timeout=5).active_queues()
    assert answer is not None
    consumed = {queue["name"] for queue in answer[worker.name]}
    assert consumed == set(queues.queue_names())


def test_a_worker_on_q_export_takes_only_export_jobs_and_the_ledger_shows_the_queue(
    worker: WorkerProcess, export_worker: WorkerProcess
) -> None:
    export_ids = [exported.delay(value).id for value in range(3)]
    other_ids = [echo.delay(value).id for value in range(3)]

    for job_id in export_ids:
        row = ledger.wait_for_status(job_id, "succeeded", "failed")
        assert (row["status"], row["queue"], row["worker"]) == (
            "succeeded",
            "export",
            export_worker.name,
        )
    for job_id in other_ids:
        row = ledger.wait_for_status(job_id, "succeeded", "failed")
        assert (row["status"], row["queue"], row["worker"]) == ("succeeded", "celery", worker.name)
    taken = ledger.count("SELECT count(*) FROM jobs WHERE worker = :w", w=export_worker.name)
    assert taken == len(export_ids)


def test_the_queue_is_recorded_when_the_job_is_queued(export_worker: WorkerProcess) -> None:
    export_worker.stop()  # nobody consumes export now: the job waits, queued
    job_id = exported.delay(1).id
    row = ledger.job(job_id)
    assert row is not None
    assert (row["status"], row["queue"]) == ("queued", "export")


def test_a_queue_given_to_apply_async_wins_over_the_types(
    worker: WorkerProcess, export_worker: WorkerProcess
) -> None:
    job_id = exported.apply_async(kwargs={"value": 5}, queue="celery").id
    row = ledger.wait_for_status(job_id, "succeeded", "failed")
    assert (row["status"], row["queue"], row["worker"]) == ("succeeded", "celery", worker.name)


def test_each_chain_step_goes_to_its_own_types_queue(
    worker: WorkerProcess, export_worker: WorkerProcess
) -> None:
    job_id = routed_pair.delay(7).id
    row = ledger.wait_for_status(job_id, "succeeded", "failed")
    assert row["status"] == "succeeded"
    started = {
        event["step_id"]: event["worker"]
        for event in ledger.events(job_id)
        if event["step_id"] is not None and event["to_status"] == "running"
    }
    with db.engine().connect() as connection:
        step_types = dict(
            connection.execute(
                text("SELECT id, step_type FROM job_steps WHERE job_id = :id"), {"id": str(job_id)}
            ).all()
        )
    by_type = {step_types[step_id]: started_on for step_id, started_on in started.items()}
    assert by_type == {"example.echo": worker.name, "example.exported": export_worker.name}
