"""One job's ``delay()`` on RabbitMQ: its message and its task-sent event are written in
one run on a confirm channel held per connection, and their confirms awaited together
(:mod:`app.ledger.runtime.single_publish`). The bytes are ``Task.apply_async``'s; the
delivery tags go on across publishes; a refusal fails the job and leaves the channel
usable; a connection the broker closed is replaced as Celery's path replaces it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from app.celery import app
from app.ledger.runtime import single_publish
from tests.conftest import BROKER_URL
from tests.e2e.test_secrets_in_celery import of_task, task_events, wait_until
from tests.support import ledger as read
from tests.support.brokers import ON_RABBITMQ, delete_queue, purge_queue, queue_length
from tests.support.jobs import echo
from tests.support.processes import start_worker
from tests.support.rabbitmq import close_connections, refusing_beyond

pytestmark = pytest.mark.skipif(
    not ON_RABBITMQ,
    reason="RabbitMQ's publisher confirms: run with JOBLEDGER_TEST_BROKER_URL=amqp://…",
)

WALK = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-single-amqp-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def _taken(queue: str) -> list[Any]:
    """Every message waiting in ``queue``, taken from it (acknowledged), oldest first."""
    taken = []
    with app.connection_for_write() as connection:
        channel = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
        channel.close()
    return taken


def _held_channels() -> list[Any]:
    return list(single_publish._held.values())


def test_a_delay_message_is_the_one_apply_async_makes(queue: str) -> None:
    """The same job published twice (publishing an id again records nothing new): on the
    held channel, then through Celery's ``apply_async`` (an option the fast path does not
    take, ``mandatory``, sends it there). Body, headers and properties are the same."""
    job_id = str(uuid.uuid4())
    kwargs = {"value": 7, "tenant": "acme"}
    options = {"queue": queue, "priority": 3, "time_limit": 20, "soft_time_limit": 10}
    single_publish._held.clear()
    echo.apply_async(kwargs=kwargs, task_id=job_id, **options)
    assert len(_held_channels()) == 1  # the fast path sent it
    echo.apply_async(kwargs=kwargs, task_id=job_id, mandatory=False, **options)

    fast, celery = _taken(queue)
    assert fast.headers["id"] == job_id
    assert fast.body == celery.body
    assert fast.headers == celery.headers
    ignored = {"delivery_tag", "delivery_info"}
    assert {k: v for k, v in fast.properties.items() if k not in ignored} == {
        k: v for k, v in celery.properties.items() if k not in ignored
    }
    assert read.transitions(job_id) == [(None, "queued")]


def test_delays_go_on_one_held_channel_whose_tags_go_on(tmp_path: Path, queue: str) -> None:
    """Twenty delays: one held channel, forty publishes on it (each message and its
    task-sent event), every message in the queue in order, every job run once."""
    single_publish._held.clear()
    with task_events() as events:
        results = [echo.apply_async(kwargs={"value": n}, queue=queue) for n in range(20)]
        wait_until(lambda: all("task-sent" in of_task(events, r.id) for r in results))
    (held,) = _held_channels()
    assert held.next_tag == 41
    assert held.channel.is_open
    assert queue_length(queue) == 20
    runner = start_worker(tmp_path, concurrency=2, queue=queue)
    try:
        for result in results:
            assert read.wait_for_status(result.id, "succeeded", "failed")["status"] == "succeeded"
            assert read.transitions(result.id) == WALK
    finally:
        runner.stop()


@pytest.fixture
def one_message_queue(queue: str) -> Iterator[str]:
    """``queue``, refusing a second message (publisher confirms answer ``basic.nack``)."""
    with refusing_beyond(queue, 1, BROKER_URL):
        yield queue


def test_a_refused_message_fails_its_job_and_the_held_channel_goes_on(
    one_message_queue: str,
) -> None:
    """The queue holds one message: the second delay is nacked, its job fails saying
    so and ``delay()`` raises (kombu's OperationalError, as Celery's own publish does);
    the held channel stays, and once the queue has room the next delay on it is
    confirmed."""
    queue = one_message_queue
    single_publish._held.clear()
    first = echo.apply_async(kwargs={"value": 1}, queue=queue)
    refused = uuid.uuid4()
    with pytest.raises(OperationalError, match=r"RabbitMQ refused 1 message\(s\)"):
        echo.apply_async(kwargs={"value": 2}, task_id=str(refused), queue=queue)

    row = read.job(refused)
    assert row is not None
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith(
        "could not publish the job to the broker: RabbitMQ refused 1 message(s)"
    )
    assert read.transitions(refused) == [(None, "queued"), ("queued", "failed")]
    (held,) = _held_channels()
    assert held.next_tag == 5  # two messages, two events

    purge_queue(queue)
    third = echo.apply_async(kwargs={"value": 3}, queue=queue)
    assert _held_channels() == [held]
    assert [m.headers["id"] for m in _taken(queue)] == [third.id]
    assert read.transitions(first.id) == [(None, "queued")]


def test_a_connection_the_broker_closed_is_replaced(tmp_path: Path, queue: str) -> None:
    """RabbitMQ closes the producer's connections (as a broker restart does) between
    two delays: the second is published all the same (on a new connection, as Celery's
    ``apply_async`` reconnects), and the one after it on a new held channel."""
    echo.apply_async(kwargs={"value": 0}, queue=queue)
    assert close_connections(os.getpid(), "jobledger test: as a broker restart") >= 1

    second = echo.apply_async(kwargs={"value": 1}, queue=queue)
    third = echo.apply_async(kwargs={"value": 2}, queue=queue)

    assert [read.job(r.id)["status"] for r in (second, third)] == ["queued", "queued"]
    assert any(held.channel.is_open for held in _held_channels())
    assert wait_until_length(queue, 3)
    runner = start_worker(tmp_path, concurrency=1, queue=queue)
    try:
        for result in (second, third):
            assert read.wait_for_status(result.id, "succeeded", "failed")["status"] == "succeeded"
            assert read.transitions(result.id) == WALK
    finally:
        runner.stop()


def wait_until_length(queue: str, length: int) -> bool:
    wait_until(lambda: queue_length(queue) == length)
    return True
