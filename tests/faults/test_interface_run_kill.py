"""``interface_run`` when its worker process dies mid-import: the run is delivered again
(acks late), imports the file again without doubling a record, archives it once and
records its metadata once: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks import interface_run
from tasks.interface_run import tenant_area
from tests.conftest import INTERFACE_DIR
from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.support import domain, ledger
from tests.support.faults import start_fault_worker, wait_until

pytestmark = pytest.mark.fault

ROWS = 5_000


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    """A queue of this test's own: only the worker the test starts consumes it."""
    name = f"jobledger-test-iface-{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)
    shutil.rmtree(INTERFACE_DIR, ignore_errors=True)


def test_a_run_whose_process_is_killed_mid_import_finishes_once_on_redelivery(
    worker_logs: Path, queue: str
) -> None:
    inbox = tenant_area("acme") / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    domain.write_csv(
        inbox / "big.csv", ["entry_id", "hours"], [[n, f"{n % 9}.5"] for n in range(ROWS)]
    )
    dataset = domain.unique("timesheets")
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    try:
        job_id = str(
            interface_run.apply_async(
                kwargs={
                    "interface": "ta-in",
                    "source": "big.csv",
                    "dataset": dataset,
                    "batch_size": 50,
                },  # unkeyed: a second execution must replace, not add
                tenant="acme",
                queue=queue,
            ).id
        )
        wait_until(
            lambda: ((ledger.job(job_id) or {}).get("metadata") or {}).get("rows_committed", 0) > 0,
            60,
            "a first batch committed",
        )
        pid = (ledger.job(job_id) or {})["worker_pid"]
        os.kill(pid, signal.SIGKILL)  # mid-import: batches in, the file not archived
        job = ledger.wait_for_status(job_id, "succeeded", "failed", "partial", timeout=120)
    finally:
        stop_worker(worker)

    assert job["status"] == "succeeded", job["failure_reason"]
    assert_sound_ledger({job_id})
    assert [to for _, to in ledger.transitions(job_id)] == [
        "queued",
        "running",
        "retrying",
        "running",
        "succeeded",
    ]
    assert job["lost_executions"] == 1
    assert domain.count_rows(dataset, tenant="acme") == ROWS
    assert any("an earlier run of this job had imported" in line for line in domain.logs(job_id))
    assert job["metadata"]["records_imported"] == ROWS
    assert job["metadata"]["files_processed"] == 1
    assert not (inbox / "big.csv").exists()
    assert os.listdir(inbox.parent / "archive") == [f"{job_id}-big.csv"]
