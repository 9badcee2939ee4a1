"""Emptying a test run's queues on whichever broker it uses (Redis or RabbitMQ).

Used between tests by this project's suites (``tests/support/brokers.py``) and by the
user-facing pytest plugin (:mod:`app.testing.pytest_plugin`): a message a previous test
left behind must not run in the next one.
"""

from __future__ import annotations

from collections.abc import Iterable

#: What kombu's Redis transport keeps beside the queues: the reserved messages.
REDIS_RESERVATIONS = ("unacked", "unacked_index")


def empty(names: Iterable[str]) -> None:
    """Drop every waiting message of the queues ``names`` on this process's broker
    (Redis: each priority level's list and the reservations; RabbitMQ: a purge of each
    queue that exists)."""
    from amqp.exceptions import NotFound

    from app import brokers
    from app.celery import app
    from app.queues import redis_keys

    queues = sorted(set(names))
    kind = brokers.kind(str(app.conf.broker_url))
    with app.connection_for_write() as connection:
        if kind == "redis":
            connection.default_channel.client.delete(*redis_keys(queues), *REDIS_RESERVATIONS)
        elif kind == "rabbitmq":
            for name in queues:
                channel = connection.channel()
                try:
                    channel.queue_purge(name)
                except NotFound:
                    continue  # no such queue: nothing waits in it (the channel is closed)
                channel.close()
