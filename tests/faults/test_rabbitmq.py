"""RabbitMQ's own faults, with real workers: a worker SIGKILLed mid-job, a worker whose
connection the broker closes mid-job, the lifeline with a dead worker and with a message
that is gone. Run with ``JOBLEDGER_TEST_BROKER_URL=amqp://…`` (``.ci/run`` does).

RabbitMQ puts a consumer's unacknowledged messages back in their queue the moment its
connection closes, so the job of a dead or cut-off worker is delivered again at once,
possibly while its first execution still runs. What must hold: the job ends exactly
once, its history is a valid walk, no transition is recorded twice, nothing stays
``running`` or ``queued``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.celery import app
from app.ledger.operations import lifeline
from app.ledger.runtime import liveness
from tests.faults.test_faults import assert_sound_ledger, stop_worker
from tests.support import ledger
from tests.support.brokers import ON_RABBITMQ, delete_queue, purge_queue, queue_length
from tests.support.faults import hold, release, start_fault_worker, wait_announced, wait_until
from tests.support.jobs import echo
from tests.support.ops import backdate
from tests.support.processes import WorkerProcess
from tests.support.rabbitmq import PrivateRabbitMQ, close_connections

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        not ON_RABBITMQ,
        reason="RabbitMQ's faults: run with JOBLEDGER_TEST_BROKER_URL=amqp://… "
        "(.ci/run's RabbitMQ pass)",
    ),
]

REDELIVERED_ONCE = [
    (None, "queued"),
    ("queued", "running"),
    ("running", "retrying"),
    ("retrying", "running"),
    ("running", "succeeded"),
]


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-rabbit-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """The workers a test starts, stopped (or killed) at its end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        stop_worker(worker)


def test_a_sigkilled_worker_s_job_runs_once_more_on_another_worker_within_seconds(
    worker_logs: Path,
    queue: str,
    workers: list[WorkerProcess],
    redis_client: redis.Redis,
    gate: str,
) -> None:
    first = start_fault_worker(worker_logs, queue, concurrency=1)
    workers.append(first)
    job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    assert wait_announced(redis_client, gate)[0] == 1
    second = start_fault_worker(worker_logs, queue, concurrency=1)
    workers.append(second)

    killed = time.monotonic()
    first.kill()  # the whole worker: its connection closes, RabbitMQ requeues the message
    attempt, pid = wait_announced(redis_client, gate, timeout=120)
    took = time.monotonic() - killed
    assert attempt == 2
    assert pid in second.children()
    release(redis_client, gate)

    row = ledger.wait_for_status(job.id, "succeeded")
    assert_sound_ledger({job.id})
    assert ledger.transitions(job.id) == REDELIVERED_ONCE
    assert row["lost_executions"] == 1
    assert row["worker"] == second.name
    # the next delivery asks the dead worker once (JOBLEDGER_WORKER_REPLY_TIMEOUT, 2 s)
    assert took < 30, f"the job ran again {took:.1f} s after its worker died"
    print(f"rabbitmq: SIGKILLed worker's job running elsewhere after {took:.1f} s")


def test_a_job_whose_worker_connection_is_closed_mid_job_ends_exactly_once(
    worker_logs: Path,
    queue: str,
    workers: list[WorkerProcess],
    redis_client: redis.Redis,
    gate: str,
) -> None:
    """The broker closes the worker's connections while its job runs: the message goes
    back to the queue and the second worker gets it while the first execution lives.
    Whether that delivery defers (the first worker answered its ping after reconnecting)
    or takes over (it did not), the ledger shows one outcome and a valid history, and the
    message of the job is acknowledged in the end (nothing left in the queue)."""
    first = start_fault_worker(worker_logs, queue, concurrency=1)
    workers.append(first)
    job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    assert wait_announced(redis_client, gate)[0] == 1
    second = start_fault_worker(worker_logs, queue, concurrency=1)
    workers.append(second)

    assert close_connections(first.pid) >= 1
    wait_until(lambda: "Connection to broker lost" in first.log(), 30, "the cut seen")
    wait_until(lambda: liveness.worker_alive(first.name), 60, "the first worker reconnected")
    release(redis_client, gate, tokens=2)  # whichever executions wait at the gate end

    row = ledger.wait_for_status(job.id, "succeeded", timeout=120)
    for worker in workers:
        assert worker.wait_until_idle(60), worker.log()
    wait_until(lambda: not queue_length(queue), 30, "the queue empty")

    assert_sound_ledger({job.id})
    transitions = ledger.transitions(job.id)
    assert transitions in ([*REDELIVERED_ONCE[:2], ("running", "succeeded")], REDELIVERED_ONCE)
    assert row["attempts"] == len([t for t in transitions if t[1] == "running"])
    assert "Unrecoverable error" not in first.log()


def test_the_lifeline_gives_a_dead_worker_s_job_to_its_requeued_message(
    worker_logs: Path,
    queue: str,
    workers: list[WorkerProcess],
    redis_client: redis.Redis,
    gate: str,
) -> None:
    """No other worker while the only one is dead: the job stays ``running`` until the
    lifeline sees it silent past the timeout; its message is back in the queue, so it is
    recorded as a lost execution (``retrying``), not failed, and the next worker runs it."""
    doomed = start_fault_worker(worker_logs, queue, concurrency=1)
    workers.append(doomed)
    job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    assert wait_announced(redis_client, gate)[0] == 1
    doomed.kill()
    wait_until(lambda: queue_length(queue) == 1, 30, "the message back in its queue")

    backdate(job.id, 600)
    result = lifeline.run_once(timeout=300)
    assert result.lost == [str(job.id)]
    assert result.failed == []
    row = ledger.job(job.id)
    assert row is not None
    assert row["status"] == "retrying"
    assert row["lost_executions"] == 1
    assert ledger.events(job.id)[-1]["actor"] == "lifeline"

    workers.append(start_fault_worker(worker_logs, queue, concurrency=1))
    assert wait_announced(redis_client, gate, timeout=60)[0] == 2
    release(redis_client, gate)
    ledger.wait_for_status(job.id, "succeeded")
    assert_sound_ledger({job.id})
    assert ledger.transitions(job.id) == REDELIVERED_ONCE


def test_the_lifeline_fails_a_queued_job_whose_message_is_gone_and_keeps_one_that_waits(
    queue: str,
) -> None:
    gone_queue = f"{queue}-gone"
    waiting = echo.apply_async(kwargs={"value": 1}, queue=queue)  # no consumer: it waits
    gone = echo.apply_async(kwargs={"value": 2}, queue=gone_queue)
    purge_queue(gone_queue)  # the message is lost (an operator purged the queue)
    try:
        for job in (waiting, gone):
            backdate(job.id, 600)
        result = lifeline.run_once(timeout=300)
    finally:
        delete_queue(gone_queue)

    assert result.queued_failed == [str(gone.id)]
    assert ledger.job(waiting.id)["status"] == "queued"  # type: ignore[index]
    row = ledger.job(gone.id)
    assert row is not None
    assert row["status"] == "failed"
    assert "is not in the broker" in row["failure_reason"]
    assert queue_length(queue) == 1


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of this test's own, to restart (never the machine's)."""
    why_not = PrivateRabbitMQ.available()
    if why_not:
        pytest.skip(why_not)
    server = PrivateRabbitMQ()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def test_a_broker_restart_keeps_queued_jobs_and_ends_the_running_one_once(
    private_rabbitmq: PrivateRabbitMQ,
    worker_logs: Path,
    queue: str,
    workers: list[WorkerProcess],
    redis_client: redis.Redis,
    gate: str,
) -> None:
    """RabbitMQ restarted (``rabbitmqctl stop``, then started on the same data) while a
    job runs and ten wait in a queue nobody consumes yet: the ten are still there after
    the restart (durable queue, persistent messages) and run once each; the running job's
    message, unacknowledged when the connection closed, comes back to its own worker,
    which defers the copy while the first execution lives: one outcome."""
    env = {"JOBLEDGER_BROKER_URL": private_rabbitmq.url}
    worker = start_fault_worker(worker_logs, queue, concurrency=2, env=env)
    workers.append(worker)
    later = f"{queue}-later"
    with app.connection_for_write(private_rabbitmq.url) as connection:
        producer = app.amqp.Producer(connection, auto_declare=True)
        running = hold.apply_async(kwargs={"gate": gate}, queue=queue, producer=producer).id
        assert wait_announced(redis_client, gate)[0] == 1
        waiting = [
            echo.apply_async(kwargs={"value": n}, queue=later, producer=producer).id
            for n in range(10)
        ]

    private_rabbitmq.stop()
    private_rabbitmq.start()
    assert private_rabbitmq.queue_length(later) == 10  # durable queue, persistent messages
    wait_until(
        lambda: worker.log().count("Connected to amqp://") >= 2, 120, "the worker reconnected"
    )
    release(redis_client, gate, tokens=2)  # whichever executions wait at the gate end
    ledger.wait_for_status(running, "succeeded", timeout=120)

    workers.append(start_fault_worker(worker_logs, later, concurrency=2, env=env))
    for job_id in waiting:
        ledger.wait_for_status(job_id, "succeeded", timeout=60)
    # the copy a second delivery deferred comes back after 10 s and is dropped
    wait_until(lambda: private_rabbitmq.queue_length(queue) == 0, 60, "the queue empty")

    assert_sound_ledger({running, *waiting})
    assert ledger.transitions(running) in (
        [*REDELIVERED_ONCE[:2], ("running", "succeeded")],
        REDELIVERED_ONCE,
    )
    ran_once = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    assert all(ledger.transitions(job_id) == ran_once for job_id in waiting)
