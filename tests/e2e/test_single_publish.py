"""One job's ``delay()`` on Redis: its message goes out with its task-sent event in one
pipeline over a held client (:mod:`app.ledger.runtime.single_publish`), the bytes
``Task.apply_async`` makes; a refusal or a lost connection is handled as Celery's path
handles it, and a job never waits ``queued`` for a message that was not sent."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import after_task_publish
from kombu.exceptions import OperationalError

from app.queues import redis_keys
from tests.conftest import BROKER_URL
from tests.support import ledger as read
from tests.support.brokers import delete_queue, redis_only
from tests.support.jobs import echo
from tests.support.processes import start_worker

WALK = [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-single-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


@pytest.fixture
def broker() -> redis.Redis:
    return redis.Redis.from_url(BROKER_URL)


def _messages(broker: redis.Redis, queue: str) -> list[bytes]:
    """The raw messages waiting in ``queue`` (every priority's list), oldest first."""
    return [raw for key in redis_keys([queue]) for raw in reversed(broker.lrange(key, 0, -1))]


@contextlib.contextmanager
def _queue_length_at_after_publish(broker: redis.Redis, queue: str) -> Iterator[list[int]]:
    """How many messages ``queue`` holds each time ``after_task_publish`` fires."""
    seen: list[int] = []

    def note(**_: Any) -> None:
        seen.append(len(_messages(broker, queue)))

    after_task_publish.connect(note, weak=False)
    try:
        yield seen
    finally:
        after_task_publish.disconnect(note)


@redis_only
def test_a_delay_message_is_the_one_apply_async_makes(broker: redis.Redis, queue: str) -> None:
    """The same job published twice (publishing an id again records nothing new): through
    the held client, then through Celery's ``apply_async`` (an option the fast path does
    not take, ``mandatory``, sends it there). The two messages are the same bytes but for
    kombu's delivery tag, a random id per publish."""
    job_id = str(uuid.uuid4())
    kwargs = {"value": 7, "tenant": "acme"}
    options = {"queue": queue, "priority": 3, "time_limit": 20, "soft_time_limit": 10}
    with _queue_length_at_after_publish(broker, queue) as seen:
        echo.apply_async(kwargs=kwargs, task_id=job_id, **options)
        echo.apply_async(kwargs=kwargs, task_id=job_id, mandatory=False, **options)
    # which path sent each: the pipeline goes out just after after_task_publish fires,
    # Celery's publish just before
    assert seen == [0, 2]

    fast, celery = (json.loads(raw) for raw in _messages(broker, queue))
    assert fast["headers"]["id"] == job_id
    for message in (fast, celery):
        message["properties"].pop("delivery_tag")
    assert json.dumps(fast) == json.dumps(celery)
    assert read.transitions(job_id) == [(None, "queued")]


@redis_only
def test_a_delay_sends_its_task_sent_event(broker: redis.Redis, queue: str) -> None:
    """Flower learns of a job from its task-sent event, sent with the message."""
    events = broker.pubsub()
    events.psubscribe("*celeryev*")
    events.get_message(timeout=5)  # the subscription's confirmation
    result = echo.apply_async(kwargs={"value": 1}, queue=queue)
    sent: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        message = events.get_message(timeout=1)
        if message is not None and message["type"] == "pmessage":
            envelope = json.loads(message["data"])
            body = json.loads(base64.b64decode(envelope["body"]))  # body_encoding base64
            # one event alone in its message: a list is a batch of events (task.multi),
            # another process's bulk enqueue (the pattern sees every Redis db's events)
            if (
                isinstance(body, dict)
                and body.get("type") == "task-sent"
                and body.get("uuid") == result.id
            ):
                sent.append(body)
    events.close()
    assert [(e["name"], e["queue"]) for e in sent] == [(echo.name, queue)]


@redis_only
def test_a_delay_sends_its_task_sent_event_after_its_message(
    broker: redis.Redis, queue: str
) -> None:
    """Redis's own log of the commands it ran (MONITOR): the job's LPUSH, then its
    task-sent event's PUBLISH, as plain Celery sends them. While the row commits only
    the message is built: no event goes out for a message that was not sent."""
    stop = f"jobledger-monitor-stop-{uuid.uuid4().hex}"
    commands: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with broker.monitor() as monitor:
            ready.set()
            while True:
                command = monitor.next_command()["command"]
                if stop in command:
                    return
                if command.startswith(("LPUSH", "PUBLISH")):
                    commands.append(command)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    result = echo.apply_async(kwargs={"value": 1}, queue=queue)
    broker.echo(stop)
    watcher.join(10)
    assert not watcher.is_alive()
    ours = [c.split()[0] for c in commands if result.id in c or _sent_event_of(c) == result.id]
    assert ours == ["LPUSH", "PUBLISH"], commands


def _sent_event_of(command: str) -> str | None:
    """The job id of a task-sent event's PUBLISH as MONITOR shows it (its body is base64
    inside kombu's envelope), else None."""
    found = re.search(r'"body": "([A-Za-z0-9+/=]+)"', command)
    if not command.startswith("PUBLISH") or found is None:
        return None
    event = json.loads(base64.b64decode(found.group(1)))
    if not isinstance(event, dict) or event.get("type") != "task-sent":
        return None
    return str(event.get("uuid"))


def _run_once_by_a_worker(log_dir: Path, queue: str, job_id: str) -> None:
    """A worker on ``queue`` runs the job: the ledger shows one walk to ``succeeded``."""
    runner = start_worker(log_dir, concurrency=1, queue=queue)
    try:
        assert read.wait_for_status(job_id, "succeeded", "failed")["status"] == "succeeded"
        assert read.transitions(job_id) == WALK
    finally:
        runner.stop()


def test_a_delay_is_run_by_a_worker_and_recorded(tmp_path: Path, queue: str) -> None:
    result = echo.apply_async(kwargs={"value": 5}, queue=queue)
    _run_once_by_a_worker(tmp_path, queue, result.id)


@redis_only
def test_a_queue_the_broker_refuses_fails_the_job_saying_why(
    broker: redis.Redis, queue: str
) -> None:
    """The queue, once declared, becomes a string key: Redis answers WRONGTYPE to the
    LPUSH, and the pipeline's replies are read."""
    echo.apply_async(kwargs={"value": 0}, queue=queue)  # declared (kombu remembers it)
    for key in redis_keys([queue]):
        broker.set(key, "not a list")
    job_id = uuid.uuid4()
    with pytest.raises(OperationalError, match="WRONGTYPE"):
        echo.apply_async(kwargs={"value": 1}, task_id=str(job_id), queue=queue)

    row = read.job(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith(
        "could not publish the job to the broker: WRONGTYPE Operation against a key"
    )
    assert read.transitions(job_id) == [(None, "queued"), ("queued", "failed")]


def _this_process_connections(broker: redis.Redis) -> list[str]:
    """The ids of the broker db's clients that belong to this process's held client."""
    from app.ledger.runtime import single_publish

    ours = {
        "%s:%s" % conn._sock.getsockname()  # noqa: UP031
        for client in list(single_publish._clients.values())
        for conn in client.connection_pool._available_connections
        if conn._sock is not None
    }
    return [c["id"] for c in broker.client_list() if c["addr"] in ours]


@redis_only
def test_a_connection_killed_before_the_publish_is_replaced(
    tmp_path: Path, broker: redis.Redis, queue: str
) -> None:
    echo.apply_async(kwargs={"value": 0}, queue=queue)  # the held client is connected
    killed = _this_process_connections(broker)
    assert killed
    for client_id in killed:
        broker.client_kill_filter(_id=client_id)

    result = echo.apply_async(kwargs={"value": 1}, queue=queue)

    _run_once_by_a_worker(tmp_path, queue, result.id)


@contextlib.contextmanager
def _killed_mid_publish(broker: redis.Redis) -> Iterator[list[str]]:
    """Writes are paused (``CLIENT PAUSE … WRITE``, for at most 5 s); the first client of
    the broker's db that blocks on an LPUSH (the pipeline's first command, sent, its
    reply not read) is killed, then writes resume."""
    killed: list[str] = []
    db = str(broker.connection_pool.connection_kwargs.get("db", 0))

    def kill() -> None:
        deadline = time.monotonic() + 5
        while not killed and time.monotonic() < deadline:
            for client in broker.client_list():
                if client["db"] == db and client["cmd"] == "lpush" and "b" in client["flags"]:
                    broker.client_kill_filter(_id=client["id"])
                    killed.append(client["id"])
                    break
            time.sleep(0.01)
        broker.execute_command("CLIENT", "UNPAUSE")

    broker.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    killer = threading.Thread(target=kill)
    killer.start()
    try:
        yield killed
    finally:
        killer.join()


@redis_only
def test_a_connection_killed_mid_publish_is_retried_as_celery_does(
    tmp_path: Path, broker: redis.Redis, queue: str
) -> None:
    """``task_publish_retry`` (on by default): the pipeline is sent again on a new
    connection; the killed one's commands never ran, so the message is there once."""
    first = echo.apply_async(kwargs={"value": 0}, queue=queue)  # the queue is declared
    with _killed_mid_publish(broker) as killed:
        result = echo.apply_async(kwargs={"value": 1}, queue=queue)
    assert killed
    in_queue = [json.loads(raw)["headers"]["id"] for raw in _messages(broker, queue)]
    assert in_queue == [first.id, result.id]

    _run_once_by_a_worker(tmp_path, queue, result.id)


@redis_only
def test_a_connection_killed_mid_publish_without_retries_fails_the_job(
    broker: redis.Redis, queue: str
) -> None:
    """``task_publish_retry=False``: the job fails, saying the connection was lost while
    its message was sent, and ``delay()`` raises."""
    echo.apply_async(kwargs={"value": 0}, queue=queue)  # the queue is declared
    broker.delete(*redis_keys([queue]))
    echo.app.conf.task_publish_retry = False
    job_id = uuid.uuid4()
    try:
        with _killed_mid_publish(broker) as killed, pytest.raises(OperationalError):
            echo.apply_async(kwargs={"value": 1}, task_id=str(job_id), queue=queue)
    finally:
        echo.app.conf.task_publish_retry = True
    assert killed
    row = read.job(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith("could not publish the job to the broker: ")
    assert "the connection was lost while it was sent" in row["failure_reason"]
    assert read.transitions(job_id) == [(None, "queued"), ("queued", "failed")]
    assert _messages(broker, queue) == []


def test_a_live_worker_meets_every_job_recorded_by_its_producer(tmp_path: Path, queue: str) -> None:
    """The message is built while the row commits, and sent after: a worker taking it at
    once still finds the row its producer wrote (it would otherwise create the job
    itself, its creation event by the worker)."""
    runner = start_worker(tmp_path, concurrency=2, queue=queue)
    try:
        results = [echo.apply_async(kwargs={"value": n}, queue=queue) for n in range(30)]
        for result in results:
            assert read.wait_for_status(result.id, "succeeded", "failed")["status"] == "succeeded"
            assert read.transitions(result.id) == WALK
            assert read.events(result.id)[0]["actor"] == "producer"
    finally:
        runner.stop()
