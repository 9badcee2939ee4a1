"""The bulk enqueue path killed mid-publish: a producer process SIGKILLed while
``apply_many`` sends the messages of jobs it has recorded (publishing.publish_recorded).

Every job was committed ``queued`` before any of its messages left, so after the kill
each job either has its message in the broker — a worker then runs it exactly once —
or never had one, and a lifeline pass fails it as not in the broker. None stays
``queued``, none runs twice, no message names a job the ledger does not have. Runs on
Redis and on RabbitMQ (``JOBLEDGER_TEST_BROKER_URL``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db
from app.ledger.operations import lifeline
from tests.support import ledger
from tests.support.brokers import delete_queue, queue_length, waiting_messages
from tests.support.faults import start_fault_worker, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
#: Jobs of the batch: several of publish_recorded's chunks (1,000 messages each).
JOBS = 2500
PRODUCER = """
import sys
from tests.support.jobs import echo
echo.apply_many([{"value": n} for n in range(%d)], queue=sys.argv[1])
print("published all", flush=True)
"""


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"jobledger-test-bulk-kill-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def test_a_producer_killed_mid_publish_leaves_each_job_run_once_or_failed(
    worker_logs: Path, queue: str
) -> None:
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER % JOBS, queue], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        wait_until(lambda: queue_length(queue) > 0, 120, "the first messages in the queue")
        producer.send_signal(signal.SIGKILL)  # mid-publish: the later chunks never leave
    finally:
        producer.wait(30)
    assert producer.stdout is not None
    assert producer.stdout.read() == b"", "the producer finished before it was killed"

    recorded = _ids("SELECT id FROM jobs")
    assert len(recorded) == JOBS  # one transaction, committed before the first publish
    sent = [headers["id"] for headers, _ in waiting_messages(queue)]
    assert len(sent) == len(set(sent)), "a job's message was published twice"
    assert set(sent) <= recorded, "a message for a job the ledger does not have"
    assert 0 < len(sent) < JOBS

    worker = start_fault_worker(worker_logs, queue)
    try:
        wait_until(
            lambda: _ids("SELECT id FROM jobs WHERE status = 'succeeded'") == set(sent),
            300,
            "every job with a message run",
        )
        wait_until(lambda: queue_length(queue) == 0, 60, "the queue drained")
        with db.engine().begin() as connection:  # waited longer than the lifeline's timeout
            connection.execute(
                text(
                    "UPDATE jobs SET updated_at = updated_at - interval '600 seconds', "
                    "created_at = created_at - interval '600 seconds' WHERE status = 'queued'"
                )
            )
        result = lifeline.run_once(timeout=300)
    finally:
        worker.stop()

    unsent = recorded - set(sent)
    assert set(result.queued_failed) == unsent
    assert _ids("SELECT id FROM jobs WHERE status = 'succeeded'") == set(sent)
    assert _ids("SELECT id FROM jobs WHERE status = 'failed'") == unsent
    for job_id in sorted(sent)[:50]:
        assert ledger.transitions(job_id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
    for job_id in sorted(unsent)[:50]:
        assert ledger.transitions(job_id) == [(None, "queued"), ("queued", "failed")]
        assert "is not in the broker" in ledger.job(job_id)["failure_reason"]  # type: ignore[index]
    assert ledger.count("SELECT count(*) FROM job_events WHERE to_status = 'running'") == len(sent)


def _ids(sql: str) -> set[str]:
    with db.engine().connect() as connection:
        return {str(row[0]) for row in connection.execute(text(sql))}
