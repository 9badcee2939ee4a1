"""The bulk enqueue path (many jobs recorded in one transaction, then published), and
what both enqueue paths record when the broker refuses the messages."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from amqp.exceptions import MessageNacked
from kombu import Connection
from kombu.exceptions import OperationalError
from redis.exceptions import ResponseError
from sqlalchemy import text

from app import db
from app.exceptions import InvalidPayload
from app.ledger.rules.naming import NAME_PATTERN
from app.ledger.runtime import publishing
from app.queues import redis_keys
from tests.conftest import BROKER_URL
from tests.e2e.test_secrets_in_celery import task_events
from tests.support import ledger as read
from tests.support.brokers import ON_RABBITMQ, delete_queue, queue_length, waiting_messages
from tests.support.faults import PrivateRedis, start_fault_worker, wait_until
from tests.support.jobs import echo, fail, gate_key, gate_redis, gated
from tests.support.processes import WorkerProcess, start_worker
from tests.support.rabbitmq import close_connections, refusing_beyond

JOB_ID = uuid.UUID("5f0c7a52-1d2b-4c3e-9a8b-7c6d5e4f3a21")
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_many_jobs_are_recorded_then_run(worker: WorkerProcess) -> None:
    results = echo.apply_many([{"value": n} for n in range(200)], tenant="acme")
    assert len(results) == 200
    for result in (results[0], results[-1]):
        row = read.wait_for_status(result.id, "succeeded")
        assert row["tenant"] == "acme"
        assert read.transitions(result.id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
    names = read.names()
    assert len(set(names)) == 200
    assert all(NAME_PATTERN.match(name) for name in names)
    assert read.count("SELECT count(*) FROM job_events WHERE to_status = 'queued'") == 200


def test_one_bad_payload_refuses_the_whole_batch_naming_it() -> None:
    with pytest.raises(InvalidPayload) as refused:
        echo.apply_many([{"value": 1}, {"value": "two"}, {"value": 3}])
    assert list(refused.value.fields) == ["[1].value"]
    assert read.count("SELECT count(*) FROM jobs") == 0


def test_a_job_whose_message_the_broker_refuses_fails_saying_why() -> None:
    """Recorded ``queued`` first, then the publish fails: the job must not wait forever."""
    nowhere = Connection(NOWHERE)
    with nowhere, pytest.raises(OperationalError):
        echo.apply_async(
            kwargs={"value": 1}, task_id=str(JOB_ID), producer=nowhere.Producer(), retry=False
        )

    row = read.job(JOB_ID)
    assert row is not None
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith("could not publish the job to the broker: ")
    assert read.transitions(JOB_ID) == [(None, "queued"), ("queued", "failed")]


def test_a_bulk_the_broker_refuses_fails_every_unsent_job_saying_why() -> None:
    nowhere = Connection(NOWHERE)
    with nowhere, pytest.raises(OperationalError):
        echo.apply_many([{"value": n} for n in range(3)], producer=nowhere.Producer(), retry=False)

    assert read.count("SELECT count(*) FROM jobs") == 3
    assert (
        read.count(
            "SELECT count(*) FROM jobs WHERE status = 'failed' "
            "AND failure_reason LIKE 'could not publish the job to the broker: %'"
        )
        == 3
    )


# -- the fast paths (app/ledger/runtime/publishing.py), through real workers ------------


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-bulk-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def test_a_batch_is_run_by_a_worker_with_its_priority_honoured(
    worker_logs: Path, queue: str, gate: str
) -> None:
    """One process reserving one message at a time: a batch published at priority 9
    overtakes one published before it at priority 0 (on Redis, kombu's per-priority
    lists; on RabbitMQ, x-max-priority), and each job runs once."""
    env = {**os.environ, "JOBLEDGER_PREFETCH_MULTIPLIER": "1"}
    lone = start_worker(worker_logs, concurrency=1, queue=queue, env=env)
    blocker = gated.apply_async(kwargs={"gate": gate, "steps": 1}, queue=queue)
    read.wait_for_status(blocker.id, "running")  # the one process is busy
    low = echo.apply_many([{"value": n} for n in range(5)], queue=queue, priority=0)
    urgent = echo.apply_many([{"value": n} for n in range(5)], queue=queue, priority=9)
    gate_redis().rpush(gate_key(gate), 1)

    rows = {r.id: read.wait_for_status(r.id, "succeeded", "failed") for r in [*low, *urgent]}
    by_start = sorted(rows, key=lambda job_id: rows[job_id]["started_at"])
    assert set(by_start[:5]) == {r.id for r in urgent}
    assert [rows[r.id]["priority"] for r in urgent] == [9] * 5
    for job_id, row in rows.items():
        assert row["status"] == "succeeded"
        assert row["worker"] == lone.name
        assert read.transitions(job_id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
    lone.stop()


def test_every_job_of_a_batch_reaches_the_task_events_as_its_own_task_sent_event(
    queue: str,
) -> None:
    """What Flower reads (Celery's event receiver): one ``task-sent`` event per job, the
    ones of a chunk sent together (``task.multi``), over more than one chunk."""
    count = publishing.BATCH + 200
    with task_events() as events:
        results = echo.apply_many([{"value": n} for n in range(count)], queue=queue)
        wanted = {result.id for result in results}
        wait_until(lambda: wanted <= {e.get("uuid") for e in list(events)})

    sent = [e for e in events if e["type"] == "task-sent" and e.get("uuid") in wanted]
    assert len(sent) == count
    by_id = {event["uuid"]: event for event in sent}
    assert [by_id[result.id]["kwargs"] for result in results[:2]] == [
        "{'value': 0, 'tenant': 'default'}",
        "{'value': 1, 'tenant': 'default'}",
    ]
    assert {(event["name"], event["queue"]) for event in sent} == {(echo.name, queue)}
    clocks = [by_id[result.id]["clock"] for result in results]
    assert clocks == sorted(clocks)  # in the order Celery made them


def test_large_messages_of_a_batch_arrive_whole_and_in_order(queue: str) -> None:
    """Bodies larger than an AMQP frame (RabbitMQ's 128 KiB ``frame_max``: each split over
    frames) and together larger than a run (``RUN_BYTES``: written before the chunk's
    hundredth message) arrive whole, in order, beside small ones."""
    sizes = [10, 300_000, 20, 700_000, 450_000, 30]
    assert sum(sizes) > publishing.RUN_BYTES
    texts = [chr(ord("a") + n) * size for n, size in enumerate(sizes)]
    results = fail.apply_many([{"message": text} for text in texts], queue=queue)

    waiting = waiting_messages(queue)
    if not ON_RABBITMQ:  # a Redis list is read from its head, the last LPUSH first
        waiting.reverse()
    assert [headers["id"] for headers, _ in waiting] == [r.id for r in results]
    assert [body[1]["message"] for _, body in waiting] == texts


@pytest.fixture
def full_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the test's own that refuses writes past 2 MB (maxmemory,
    noeviction): LPUSHes answer ``OOM`` once it is full."""
    server = PrivateRedis(persistent=False)
    server.start()
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(client.info("memory")["used_memory"] + 2_000_000))
    yield server
    server.destroy()


def test_a_redis_that_fills_up_mid_batch_fails_exactly_the_refused_jobs(
    worker_logs: Path, queue: str, full_redis: PrivateRedis
) -> None:
    """Three pipelines of 1,000: Redis takes the messages until it is full, then answers
    an OOM error to each LPUSH. The jobs whose message is in the queue stay ``queued`` (and a
    worker runs them), every other one is ``failed`` with Redis's answer."""
    broker = Connection(full_redis.url)
    with broker, pytest.raises(ResponseError, match="maxmemory"):
        echo.apply_many(
            [{"value": n} for n in range(3000)],
            queue=queue,
            producer=broker.Producer(),
        )

    client = redis.Redis.from_url(full_redis.url)
    in_queue = [
        json.loads(raw)["headers"]["id"]
        for key in redis_keys([queue])
        for raw in client.lrange(key, 0, -1)
    ]
    assert len(in_queue) == len(set(in_queue))
    queued = _ids("SELECT id FROM jobs WHERE status = 'queued'")
    failed = _ids(
        "SELECT id FROM jobs WHERE status = 'failed' AND failure_reason "
        "LIKE 'could not publish the job to the broker: %maxmemory%'"
    )
    assert 0 < len(queued) < 3000
    assert set(in_queue) == queued
    assert len(queued) + len(failed) == 3000

    client.config_set("maxmemory", "0")  # room for the worker's own keys
    runner = start_fault_worker(worker_logs, queue, env={"JOBLEDGER_BROKER_URL": full_redis.url})
    wait_until(
        lambda: _ids("SELECT id FROM jobs WHERE status = 'succeeded'") == queued,
        120,
        "every published job run",
    )
    assert read.count("SELECT count(*) FROM jobs WHERE status NOT IN ('succeeded', 'failed')") == 0
    runner.stop()


@pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="RabbitMQ's: a connection the broker closed is found so at its next use (on "
    "Redis each batch takes a client of its own, reconnected by redis-py)",
)
def test_a_bulk_after_the_broker_closed_the_producer_connection_publishes_every_job(
    queue: str,
) -> None:
    """As after a broker restart: RabbitMQ closes the connections this producer used
    (the pool keeps them, still looking open); the next ``apply_many`` opens its channel
    on a fresh connection and sends every message, as ``delay()`` would, instead of
    failing the whole batch (it did: ``CONNECTION_FORCED``, every job failed)."""
    echo.apply_many([{"value": 0}], queue=queue)  # the pool holds a used connection
    assert close_connections(os.getpid(), "jobledger test: as a broker restart") >= 1

    results = echo.apply_many([{"value": n} for n in range(1, 4)], queue=queue)

    assert [read.job(r.id)["status"] for r in results] == ["queued"] * 3
    for result in results:
        assert read.transitions(result.id) == [(None, "queued")]
    assert wait_until(lambda: queue_length(queue) == 4, 10, "the four messages")


@pytest.fixture
def short_queue(queue: str) -> Iterator[str]:
    """``queue`` holding 5 messages at most, refusing more (publisher confirms answer
    ``basic.nack``)."""
    with refusing_beyond(queue, 5, BROKER_URL):
        yield queue


@pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="RabbitMQ's publisher confirms: run with JOBLEDGER_TEST_BROKER_URL=amqp://…",
)
def test_a_rabbitmq_queue_that_refuses_part_of_a_batch_fails_the_nacked_jobs(
    worker_logs: Path, short_queue: str
) -> None:
    """Twelve messages for a queue that holds five: RabbitMQ confirms five and nacks
    seven; the seven jobs fail saying so, the five run."""
    with pytest.raises(MessageNacked):
        echo.apply_many([{"value": n} for n in range(12)], queue=short_queue)

    assert queue_length(short_queue) == 5
    failed = _ids(
        "SELECT id FROM jobs WHERE status = 'failed' AND failure_reason "
        "LIKE 'could not publish the job to the broker: RabbitMQ refused 7 message(s)%'"
    )
    queued = _ids("SELECT id FROM jobs WHERE status = 'queued'")
    assert (len(failed), len(queued)) == (7, 5)
    runner = start_worker(worker_logs, concurrency=2, queue=short_queue)
    for job_id in queued:
        read.wait_for_status(job_id, "succeeded")
    runner.stop()


def _ids(sql: str) -> set[str]:
    with db.engine().connect() as connection:
        return {str(row[0]) for row in connection.execute(text(sql))}
