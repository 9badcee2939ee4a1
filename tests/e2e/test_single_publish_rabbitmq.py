"""One job's ``delay()`` on RabbitMQ: its message and its task-sent event are written in
one run on a confirm channel held per connection, and their confirms awaited together
(:mod:`app.ledger.runtime.single_publish`). The bytes are ``Task.apply_async``'s; the
delivery tags go on across publishes; a refusal fails the job and leaves the channel
usable; a connection the broker closed is replaced as Celery's path replaces it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError

from app.celery import app
from app.ledger.runtime import publishing, single_publish
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


@pytest.fixture(autouse=True)
def no_held_channel() -> None:
    """Each test starts with no held channel (those of earlier tests' connections would
    stay in the map while their connections live in the pool)."""
    single_publish._held.clear()


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


def _run_by_a_worker(log_dir: Path, queue: str, *job_ids: str) -> None:
    runner = start_worker(log_dir, concurrency=1, queue=queue)
    try:
        for job_id in job_ids:
            assert read.wait_for_status(job_id, "succeeded", "failed")["status"] == "succeeded"
            assert read.transitions(job_id) == WALK
    finally:
        runner.stop()


def test_a_connection_lost_while_the_confirms_are_awaited_leaves_the_job_queued(
    tmp_path: Path, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message and its event are written, then the connection is lost before their
    confirms are read (made to happen here: the wait raises py-amqp's error at once).
    The message may have arrived: it is looked for, found in its queue, and its job
    stays ``queued`` (failing it would lose a job whose message a worker will take);
    ``delay()`` raises. A worker then runs it."""

    def lost(self: publishing.ConfirmedBatch) -> None:
        raise RecoverableConnectionError("connection lost (test) before the confirms came")

    echo.apply_async(kwargs={"value": 0}, queue=queue)  # connected, queue declared
    purge_queue(queue)
    monkeypatch.setattr(publishing.ConfirmedBatch, "_await_confirms", lost)
    unconfirmed = uuid.uuid4()
    with pytest.raises(OperationalError, match="before the confirms came"):
        echo.apply_async(kwargs={"value": 1}, task_id=str(unconfirmed), queue=queue)
    monkeypatch.undo()

    assert read.transitions(unconfirmed) == [(None, "queued")]
    assert _held_channels() == []  # dropped: its answers were never read
    _run_by_a_worker(tmp_path, queue, str(unconfirmed))


def test_a_broker_silent_past_the_confirm_timeout_has_its_connection_dropped(
    tmp_path: Path, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CONFIRM_TIMEOUT`` (0 here: the wait gives up at once, before the broker could
    answer) ends the wait; the connection is dropped without a closing handshake, which
    would wait for a silent broker too (Celery's ``confirm_publish`` has no bound at
    all). The message is looked for and found: the job stays ``queued``. The next
    ``delay()`` goes out on a new connection; a worker runs both."""
    echo.apply_async(kwargs={"value": 0}, queue=queue)
    purge_queue(queue)
    (before,) = _held_channels()
    connection = before.channel.connection  # py-amqp's
    monkeypatch.setattr(publishing, "CONFIRM_TIMEOUT", 0.0)
    unconfirmed = uuid.uuid4()
    started = time.monotonic()
    with pytest.raises(OperationalError, match="did not confirm every message within 0 s"):
        echo.apply_async(kwargs={"value": 1}, task_id=str(unconfirmed), queue=queue)
    assert time.monotonic() - started < 10
    monkeypatch.undo()
    assert read.transitions(unconfirmed) == [(None, "queued")]
    assert connection.channels is None  # collected: its socket closed, no handshake

    after = echo.apply_async(kwargs={"value": 2}, queue=queue)
    assert [held.channel.is_open for held in _held_channels()] == [True]
    _run_by_a_worker(tmp_path, queue, str(unconfirmed), after.id)
