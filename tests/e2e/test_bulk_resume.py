"""Bulk operations that stop half-way or are started twice at once: a run SIGKILLed
mid-batch is resumed without acting twice on a job, and two concurrent runs of one name
act once (real PostgreSQL ledger, real broker; no worker consumes the jobs' queue)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app.config import settings
from app.db import engine
from app.ledger.operations import actions, bulk
from app.ledger.reads.job_search import JobFilter
from tests.support import ledger
from tests.support.api import unused_queue
from tests.support.jobs import echo
from tests.support.processes import ROOT
from tests.support.races import at_once, holding, jobs_in_order, wait_for_acted


@pytest.fixture
def batches_of_four(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBLEDGER_BULK_BATCH_SIZE", "4")
    settings.cache_clear()
    yield
    settings.cache_clear()


def canceled_jobs(count: int, queue: str) -> list[str]:
    ids = [
        str(echo.apply_async(kwargs={"value": n}, queue=queue, tenant="acme").id)
        for n in range(count)
    ]
    for job_id in ids:
        actions.cancel(job_id, actor="api")
    return ids


def stale(operation_id: int) -> None:
    """The operation's last progress :data:`bulk.STALE_AFTER` in the past: the time a
    resumer waits before taking over a run that may be alive."""
    with engine().begin() as connection:
        connection.execute(
            text("UPDATE job_operations SET updated_at = updated_at - :gap WHERE id = :id"),
            {"gap": bulk.STALE_AFTER, "id": operation_id},
        )


def test_a_run_killed_mid_batch_resumes_without_acting_twice_on_a_job(
    batches_of_four: None,
) -> None:
    queue = unused_queue()
    canceled_jobs(4, queue)
    ids = jobs_in_order(queue)  # the order the operation takes them in
    command = [sys.executable, "-m", "app.cli", "bulk", "retry", "--name", "again"]
    with holding(ids[2]):  # the run acts on two jobs, then waits for the third's row
        running = subprocess.Popen(
            [*command, "--tenant", "acme", "--queue", queue, "--yes"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            acted = wait_for_acted(ids, 2)
        finally:
            running.kill()  # SIGKILL mid-batch: no handler runs, nothing is recorded after
            running.wait(30)
    assert acted == ids[:2]
    killed = bulk.find("acme", "again")
    assert killed is not None
    assert (killed.status, killed.done) == ("running", 0)  # died before its progress
    # the two it retried were canceled again meanwhile: retry's sources once more
    for job_id in acted:
        actions.cancel(job_id, actor="api")
    # asked again at once: it may still be running somewhere, so nothing is acted on
    again = bulk.run("retry", JobFilter(tenant="acme", queues=(queue,)), "again", "on-call")
    assert (again.status, again.done) == ("running", 0)
    assert all(ledger.job(job_id)["status"] == "canceled" for job_id in ids)  # type: ignore[index]
    stale(killed.id)

    resumed = bulk.run("retry", JobFilter(tenant="acme", queues=(queue,)), "again", "on-call")

    assert resumed.status == "done"
    for job_id in ids:
        retries = [t for t in ledger.transitions(job_id) if t == ("canceled", "queued")]
        assert len(retries) == 1, (job_id, ledger.transitions(job_id))
        assert ledger.has_valid_history(job_id)
        assert ledger.job(job_id)["operation_id"] == resumed.id  # type: ignore[index]
    assert resumed.done == 4


def test_two_concurrent_runs_of_one_name_act_once() -> None:
    queue = unused_queue()
    ids = canceled_jobs(6, queue)
    wanted = JobFilter(tenant="acme", queues=(queue,))
    results = at_once(lambda: bulk.run("retry", wanted, "together", "on-call"), 2)

    assert all(isinstance(result, bulk.Operation) for result in results), results
    assert ledger.count("SELECT count(*) FROM job_operations") == 1
    for job_id in ids:
        assert ledger.transitions(job_id).count(("canceled", "queued")) == 1
    assert bulk.find("acme", "together").done == 6  # type: ignore[union-attr]
