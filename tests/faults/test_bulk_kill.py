"""The bulk enqueue path killed mid-publish: a producer process SIGKILLed while
``apply_many`` sends the messages of jobs it has recorded (publishing.publish_recorded),
and the producer's Redis connection killed mid-pipeline.

Every job was committed ``queued`` before any of its messages left, so after the kill
each job either has its message in the broker — a worker then runs it exactly once —
or never had one, and is failed (by a lifeline pass after a killed producer; by the
producer itself, which looks for the messages, after a killed connection). None stays
``queued``, none runs twice, none is failed while its body runs, no message names a job
the ledger does not have. The SIGKILL test runs on Redis and on RabbitMQ
(``JOBLEDGER_TEST_BROKER_URL``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError
from sqlalchemy import text

from app import db
from app.ledger.operations import lifeline
from tests.conftest import BROKER_URL
from tests.support import ledger
from tests.support.broker_cuts import Cut, killed_mid_pipeline, shut_mid_confirm_batch
from tests.support.brokers import (
    ON_RABBITMQ,
    delete_queue,
    queue_length,
    redis_only,
    waiting_messages,
)
from tests.support.faults import start_fault_worker, wait_until
from tests.support.jobs import counted, gate_key, gate_redis

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
    _assert_walks(ran=set(sent), failed=unsent)
    for job_id in sorted(unsent)[:50]:
        assert "is not in the broker" in ledger.job(job_id)["failure_reason"]  # type: ignore[index]
    assert ledger.count("SELECT count(*) FROM job_events WHERE to_status = 'running'") == len(sent)


#: Jobs of a batch whose connection is cut: one chunk, so the producer decides about the
#: unsure messages at once (no later chunk to fail first).
CHUNK_JOBS = 600
#: Commands (Redis) or publishes (RabbitMQ) sent before the cut: the task messages come
#: first in a chunk (its task-sent events follow them), so 250 jobs' messages go out.
BEFORE_KILL = 250


@redis_only
def test_a_redis_connection_killed_mid_pipeline_fails_only_the_jobs_whose_message_is_not_there(
    worker_logs: Path, queue: str, gate: str
) -> None:
    """A worker consumes the queue while ``apply_many`` sends its pipeline; Redis runs
    its first 250 LPUSHes, then another client kills the connection (CLIENT KILL). The
    producer cannot know which messages arrived: it looks. The worker holds some of
    them already (their bodies wait at the gate, their lazy start may not be written),
    the rest wait in the queue: all those jobs stay queued and run once; only the 350
    jobs whose message never reached Redis are failed, saying so."""

    def publish(payloads: list[dict[str, Any]]) -> Cut:
        with (
            killed_mid_pipeline(BROKER_URL, after=BEFORE_KILL) as cut,
            pytest.raises(redis.exceptions.ConnectionError),
        ):
            counted.apply_many(payloads, queue=queue)
        return cut

    missing, running_then = _run_cut_batch(worker_logs, queue, gate, publish)
    assert running_then, "no worker held a message when the producer looked"
    for job_id in sorted(missing)[:50]:
        reason = ledger.job(job_id)["failure_reason"]  # type: ignore[index]
        assert reason.endswith(
            "(the connection was lost while it was sent, and its message is not in the broker)"
        )


@pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="RabbitMQ's publisher confirms: run with JOBLEDGER_TEST_BROKER_URL=amqp://…",
)
def test_a_rabbitmq_connection_lost_mid_batch_leaves_the_unconfirmed_jobs_to_run(
    worker_logs: Path, queue: str, gate: str
) -> None:
    """The producer's connection is lost after 250 of the chunk's 600 task messages were
    written, before their confirms were read. The unconfirmed ones may or may not be in
    the queue (RabbitMQ drops what it had not routed when the connection closes: seen,
    a few of a run written just before the close), and RabbitMQ cannot be searched for
    them while its queue holds messages: they stay queued (none failed on doubt); the
    worker runs each one that arrived once, the lifeline fails the others once the
    queues are empty; the 350 never written are failed at once, saying why (kombu does
    not publish them on a new connection)."""

    def publish(payloads: list[dict[str, Any]]) -> Cut:
        with shut_mid_confirm_batch(after=BEFORE_KILL) as cut, pytest.raises(OperationalError):
            counted.apply_many(payloads, queue=queue)
        return cut

    unsent, _ = _run_cut_batch(worker_logs, queue, gate, publish)
    for job_id in sorted(unsent)[:50]:
        reason = ledger.job(job_id)["failure_reason"]  # type: ignore[index]
        assert "connection was lost" not in reason


def _run_cut_batch(
    worker_logs: Path, queue: str, gate: str, publish: Callable[[list[dict[str, Any]]], Cut]
) -> tuple[set[str], list[bytes]]:
    """``publish`` a batch of ``example.counted`` jobs whose connection it cuts, while a
    worker consumes ``queue``. At once, every job whose message went out is ``queued`` or
    ``running`` and every other one ``failed``; then each of the former runs once and
    succeeds, no body runs for a failed job, nothing is left live, no execution went
    unrecorded. Returns the failed jobs and the bodies started before the verdict."""
    runner = start_fault_worker(worker_logs, queue)
    ran = gate_key(gate) + ":ran"
    try:
        cut = publish([{"gate": gate, "steps": 1}] * CHUNK_JOBS)
        running_then = gate_redis().lrange(ran, 0, -1)  # bodies started before the verdict
        recorded = _ids("SELECT id FROM jobs")
        went_out = set(cut.arrived)
        assert len(recorded) == CHUNK_JOBS
        assert len(went_out) == BEFORE_KILL
        assert went_out <= recorded
        failed = recorded - went_out
        assert _ids("SELECT id FROM jobs WHERE status = 'failed'") == failed
        assert _ids("SELECT id FROM jobs WHERE status IN ('queued', 'running')") == went_out

        gate_redis().rpush(gate_key(gate), *[1] * len(went_out))  # one token per body
        wait_until(
            lambda: _settled(went_out),
            120,
            "every job whose message went out run, or failed as not in the broker",
        )
    finally:
        runner.stop()

    succeeded = _ids("SELECT id FROM jobs WHERE status = 'succeeded'")
    lost = went_out - succeeded  # written, then dropped by the broker at the close
    if not ON_RABBITMQ:
        assert lost == set(), "Redis ran these commands (their replies were read)"
    assert len(lost) < len(went_out) // 2, f"{len(lost)} of {len(went_out)} messages lost"
    bodies = [run.decode() for run in gate_redis().lrange(ran, 0, -1)]
    assert sorted(bodies) == sorted(succeeded), "a body ran twice, or for a failed job"
    assert _ids("SELECT id FROM jobs WHERE status NOT IN ('succeeded', 'failed')") == set()
    assert ledger.count("SELECT count(*) FROM job_logs WHERE level = 'warning'") == 0
    _assert_walks(ran=succeeded, failed=failed | lost)
    for job_id in sorted(failed)[:50]:
        reason = ledger.job(job_id)["failure_reason"]  # type: ignore[index]
        assert reason.startswith("could not publish the job to the broker: ")
    for job_id in lost:
        assert "is not in the broker" in ledger.job(job_id)["failure_reason"]  # type: ignore[index]
    return failed, running_then


#: The lifeline timeout of :func:`_settled`'s passes: longer than any body of these tests
#: runs (a running job quiet for longer would be taken for lost).
SETTLE_TIMEOUT = 30


def _settled(went_out: set[str]) -> bool:
    """Whether each job of ``went_out`` ran, or was failed by a lifeline pass (run here)
    because its message is provably not in the broker (never while a queue still holds a
    message, on RabbitMQ) after it waited :data:`SETTLE_TIMEOUT` seconds."""
    lifeline.run_once(timeout=SETTLE_TIMEOUT)
    live = _ids("SELECT id FROM jobs WHERE status IN ('queued', 'running')")
    return not live & went_out


def _assert_walks(*, ran: set[str], failed: set[str]) -> None:
    """Every job of ``ran`` walked queued -> running -> succeeded, every one of
    ``failed`` queued -> failed, and no other job is in the ledger."""
    walks = ledger.all_transitions()
    assert walks.keys() == ran | failed
    ran_once = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert [job_id for job_id in ran if walks[job_id] != ran_once] == []
    never_sent = [(None, "queued"), ("queued", "failed")]
    assert [job_id for job_id in failed if walks[job_id] != never_sent] == []


def _ids(sql: str) -> set[str]:
    with db.engine().connect() as connection:
        return {str(row[0]) for row in connection.execute(text(sql))}
