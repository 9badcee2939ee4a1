"""Bulk operations that stop half-way or are started twice at once: a resumed run never
acts twice on a job, and two concurrent runs of one name act once (real PostgreSQL or
SQLite ledger, real broker; no worker consumes the jobs' queue)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from app.config import settings
from app.ledger.operations import actions, bulk
from app.ledger.reads.job_search import JobFilter
from tests.support import ledger
from tests.support.api import unused_queue
from tests.support.jobs import echo


class Died(Exception):
    """The process running the operation stops between two jobs of a batch."""


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


def test_a_run_stopped_mid_batch_resumes_without_acting_twice_on_a_job(
    batches_of_four: None,
) -> None:
    queue = unused_queue()
    ids = canceled_jobs(4, queue)
    wanted = JobFilter(tenant="acme", queues=(queue,))
    acted: list[uuid.UUID] = []

    def die_at_the_third(job_id: uuid.UUID) -> None:
        if len(acted) == 2:
            raise Died("killed mid-batch")
        acted.append(job_id)

    with pytest.raises(Died):
        bulk.run("retry", wanted, "again", "on-call", before_each=die_at_the_third)
    assert bulk.find("acme", "again").status == "failed"  # type: ignore[union-attr]
    # the two it retried were canceled again meanwhile: retry's sources once more
    for job_id in acted:
        actions.cancel(job_id, actor="api")

    resumed = bulk.run("retry", wanted, "again", "on-call")

    assert resumed.status == "done"
    for job_id in ids:
        retries = [t for t in ledger.transitions(job_id) if t == ("canceled", "queued")]
        assert len(retries) == 1, (job_id, ledger.transitions(job_id))
        assert ledger.has_valid_history(job_id)
    assert resumed.done == 4


def test_two_concurrent_runs_of_one_name_act_once() -> None:
    queue = unused_queue()
    ids = canceled_jobs(6, queue)
    wanted = JobFilter(tenant="acme", queues=(queue,))
    barrier = threading.Barrier(2)
    results: list[bulk.Operation | BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(bulk.run("retry", wanted, "together", "on-call"))
        except BaseException as error:  # reported by the assertion below
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert all(isinstance(result, bulk.Operation) for result in results), results
    assert ledger.count("SELECT count(*) FROM job_operations") == 1
    for job_id in ids:
        assert ledger.transitions(job_id).count(("canceled", "queued")) == 1
    assert bulk.find("acme", "together").done == 6  # type: ignore[union-attr]
