"""The broker of a test run, whichever it is (``JOBLEDGER_TEST_BROKER_URL``, default the
tests' Redis): emptying and deleting its queues, and the mark of tests that only make
sense on Redis.

The tests' Redis (``JOBLEDGER_TEST_REDIS_URL``) is there on both brokers: the test jobs
and the tests meet on its lists (:func:`tests.support.jobs.gate_redis`), which has
nothing to do with where the messages travel.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from amqp.exceptions import NotFound

from app import brokers
from app.celery import app
from app.queues import redis_keys, waiting
from app.testing import broker_queues
from tests.conftest import BROKER_URL

#: Whether this run's broker is RabbitMQ.
ON_RABBITMQ = brokers.kind(BROKER_URL) == "rabbitmq"

#: A test that reads or writes Redis's own broker keys (queue lists, the ``unacked``
#: hash, a private redis-server as the broker): skipped on RabbitMQ, with why.
redis_only = pytest.mark.skipif(
    ON_RABBITMQ,
    reason="pokes the Redis broker's own keys (queue lists, the unacked hash); RabbitMQ "
    "keeps unacknowledged messages per connection: its faults are "
    "tests/faults/test_rabbitmq.py",
)


def empty_queues(names: Iterable[str] = ()) -> None:
    """Drop every waiting message of the default queue, the app's queues and ``names``."""
    broker_queues.empty([app.conf.task_default_queue, *app.amqp.queues, *names])


def purge_queue(name: str) -> None:
    """Drop every waiting message of queue ``name`` only."""
    if ON_RABBITMQ:
        _on_rabbitmq(lambda channel: channel.queue_purge(name))
        return
    with app.connection_for_write() as connection:
        connection.default_channel.client.delete(name)


def delete_queue(name: str) -> None:
    """Delete the queue ``name`` (a test's own), with its messages."""
    if ON_RABBITMQ:
        _on_rabbitmq(lambda channel: channel.queue_delete(name))
        return
    with app.connection_for_write() as connection:
        connection.default_channel.client.delete(name)


def queue_length(name: str) -> int:
    """Messages waiting in ``name`` (not those reserved by a worker)."""
    if ON_RABBITMQ:
        found = _on_rabbitmq(lambda channel: channel.queue_declare(name, passive=True))
        return int(found.message_count) if found else 0
    with app.connection_for_read() as connection:  # every priority level's list
        return waiting(connection.default_channel.client, name)


def waiting_messages(name: str) -> list[tuple[dict[str, Any], Any]]:
    """``(headers, decoded body)`` of every message waiting in queue ``name``, left there.
    Redis: the queue's lists (one per priority level), read. RabbitMQ: each message taken
    unacknowledged and given back when the channel closes (a queue cannot be read
    otherwise)."""
    if not ON_RABBITMQ:
        with app.connection_for_read() as connection:
            client = connection.default_channel.client
            raw = [
                json.loads(item) for key in redis_keys([name]) for item in client.lrange(key, 0, -1)
            ]
        return [(m["headers"], json.loads(base64.b64decode(m["body"]))) for m in raw]

    def read(channel: Any) -> list[tuple[dict[str, Any], Any]]:
        found = []
        while (message := channel.basic_get(name, no_ack=False)) is not None:
            found.append((dict(message.headers), json.loads(message.body)))
        return found

    return _on_rabbitmq(read) or []


def _on_rabbitmq(operation: Callable[[Any], Any]) -> Any:
    """Run ``operation(channel)`` on a channel of its own: RabbitMQ closes a channel that
    names a missing queue, and a missing queue is nothing to empty."""
    with app.connection_for_write() as connection:
        channel = connection.channel()
        try:
            return operation(channel)
        except NotFound:
            return None
        finally:
            if channel.is_open:
                channel.close()
