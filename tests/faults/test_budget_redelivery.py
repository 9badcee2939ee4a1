"""A budget job whose pool process is SIGKILLed mid-run is delivered again and finishes
without doubling anything: ``suggestions_apply`` (acks late, idempotent body) counts what
its first execution committed as ``already_applied``, rolls nothing back twice and leaves
every suggestion whole. A real worker of the test's own queue, a lock held on a row as
the mid-run point."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks.suggestions_apply import suggestions_apply
from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.support import budgets, domain, ledger
from tests.support.faults import start_fault_worker

pytestmark = pytest.mark.fault


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    name = f"jobledger-test-budget-{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)


def test_an_apply_killed_mid_batch_is_redelivered_and_finishes_once(
    worker_logs: Path, queue: str
) -> None:
    budget = domain.unique("killed")
    tx = budgets.seed(budgets.TENANT, budget, budgets.ROWS)
    names = ("u1", "u2", "u5")
    ids = [budgets.suggest(budgets.TENANT, budget, tx[name], "Coffee") for name in names]
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        with budgets.holding("SELECT id FROM transactions WHERE id = :id FOR UPDATE", id=tx["u2"]):
            job_id = suggestions_apply.apply_async(
                args=(budget, ids), kwargs={"batch_size": 1}, tenant=budgets.TENANT, queue=queue
            ).id
            budgets.wait_for_lock_waiter("batch 2 waiting for the held row")
            pid = ledger.job(job_id)["worker_pid"]  # type: ignore[index]
            os.kill(pid, signal.SIGKILL)  # batch 2 dies uncommitted
        done = ledger.wait_for_status(job_id, "succeeded", "partial", "failed", timeout=90)
    finally:
        stop_worker(worker)

    assert done["status"] == "succeeded", (done["failure_reason"], done["errors"])
    assert done["result"] == {"requested": 3, "applied": 2, "already_applied": 1, "failed": 0}
    assert done["attempts"] == 2
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert_sound_ledger({job_id})
    rows = domain.query(
        "SELECT s.status, s.job_id::text AS job, t.category FROM suggestions s "
        "JOIN transactions t ON t.id = s.transaction_id WHERE s.id = ANY(:ids)",
        ids=ids,
    )
    assert [(r["status"], r["job"], r["category"]) for r in rows] == [
        ("applied", job_id, "Coffee")
    ] * 3
