"""Publishing the message of one job ``delay()``/``apply_async`` has just recorded.

Usage::

    from app.ledger.runtime.single_publish import publish_one

    result = publish_one(app, Outgoing(task=..., job_id=..., kwargs=..., ...), actor=actor)

The caller has committed the job's row and its ``queued`` event. On Redis the message
takes the bulk path's machinery for one message (:mod:`app.ledger.runtime.publishing`):
Celery's own message, made by ``app.amqp.create_task_message`` and published by
``app.amqp.send_task_message`` (``before_task_publish``/``after_task_publish``, the
task-sent event Flower reads), the same bytes as ``Task.apply_async`` makes, gathered and
sent with its task-sent event in one pipeline (no MULTI) over a ``redis.Redis`` client
held per connection pool. Both replies are read.

Why: kombu 5.7's Redis transport makes a new ``redis.Redis`` client for every command it
sends (``Channel.conn_or_acquire``), and redis-py 8's client constructor fills a table of
response callbacks each time: about 0.45 ms per client on the benchmark machine, two per
``delay()`` (the LPUSH and the event's PUBLISH), more than half of a plain Celery
``delay()``. The held client is kombu's own (``Channel._create_client``: same pool, same
key prefix), made once per pool; redis-py's pool reconnects by itself in a forked child
and after a lost connection, and a client over a pool is safe to share between threads
(each publish makes its own pipeline). Plain Celery publishing (and the app-wide kombu
transport) is left as it is: the gain is the ledger's alone.

The guarantees are the ones ``Task.apply_async`` gives:

- a connection lost while the pipeline is sent is retried as Celery's
  ``task_publish_retry``/``task_publish_retry_policy`` say (kombu's ``retry_over_time``,
  the same waits); if it still fails, the job is failed unless a worker has started it
  since (the message may have arrived) and the error is raised, as kombu's OperationalError;
- a refusal (an error reply: a queue key of another type, ``maxmemory``) fails the job
  saying why (:func:`~app.ledger.runtime.publishing.record_unpublished`) and is raised.

``after_task_publish`` fires once the message is handed to the pipeline, just before the
round trip that sends it (as on the bulk path); a send that then fails raises from
``delay()``, as a failed task-sent event does after that signal in plain Celery.

Anything else goes through ``Task.apply_async`` as before: another broker,
``task_always_eager``, an option the bulk path's sender does not take (``countdown``,
``producer``, ``retry``…), a task it does not make messages for (``expires``, v2
compatibility), a parent task whose priority is inherited.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery
from celery.result import AsyncResult
from kombu.messaging import Producer
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.functional import retry_over_time

from app.ledger import transitions as ledger
from app.ledger.runtime.publishing import (
    _SENDER_OPTIONS,
    Outgoing,
    _apply,
    _RedisBatch,
    _Sender,
    record_unpublished,
)

#: The held client of each kombu connection pool (see the module docstring).
_clients: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()
#: The entities declared on each channel (:attr:`_Gathering._declared`).
_declared: WeakKeyDictionary[Any, list[Any]] = WeakKeyDictionary()


def publish_one(app: Celery, message: Outgoing, *, actor: ledger.Actor) -> AsyncResult:
    """Publish the message of one recorded job; see the module docstring.

    Raises:
        Exception: the broker's error, after the job is recorded ``failed`` saying why
            (unless its message reached the broker: an error reply to its event only).
    """
    batch: _OneMessage | None = None
    since = datetime.now(UTC)
    try:
        if app.conf.task_always_eager or not message.options.keys() <= _SENDER_OPTIONS:
            producer = message.options.get("producer")  # Celery's own path, as given
            options = {k: v for k, v in message.options.items() if k != "producer"}
            return _apply(app, dataclasses.replace(message, options=options), producer)
        with app.producer_or_acquire() as connected:
            channel = connected.channel
            sender = _Sender(app)
            if (
                not isinstance(channel, RedisChannel)
                or not sender.fast
                or sender._task(message.task) is None
            ):
                return _apply(app, message, connected)
            batch = _OneMessage(connected, held_client(channel))
            with batch:
                batch.current = message.job_id
                result = sender(message, batch.producer)
                with connected.connection._reraise_as_library_errors():
                    batch.send_retrying(app, connected)
            return result
    except Exception as error:
        if batch is None or message.job_id not in batch.sent:
            lost = batch is not None and message.job_id in batch.unsure
            record_unpublished(
                [message.job_id], error, actor, unless_started_since=since if lost else None
            )
        raise


def held_client(channel: RedisChannel) -> Any:
    """kombu's Redis client of ``channel``'s connection pool, made once per pool."""
    pool = channel.pool
    client = _clients.get(pool)
    if client is None:
        client = _clients[pool] = channel._create_client()  # type: ignore[no-untyped-call]
    return client


class _OneMessage(_RedisBatch):
    """The bulk path's Redis batch for one job's messages, on a held client, with the
    commands kept so that a pipeline lost with its connection can be sent again."""

    def __init__(self, connected: Producer, client: Any) -> None:
        super().__init__(connected)
        # the queues and exchanges declared on this channel: kombu remembers them per
        # connection too, but checks each again per message (a bind and copies of it)
        self.producer._declared = _declared.setdefault(self.producer.channel, [])
        self._client = client
        self._pipeline = client.pipeline(transaction=False)
        self._calls: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, name: str, *args: Any) -> None:
        self._calls.append((name, args))
        super().add(name, *args)

    def send_retrying(self, app: Celery, connected: Producer) -> None:
        """Send, and again on a lost connection as ``task_publish_retry`` and its policy
        say (kombu's ``Connection.ensure`` does it so for ``Task.apply_async``)."""
        if not app.conf.task_publish_retry:
            self.send()
            return
        policy = dict(app.conf.task_publish_retry_policy or {})
        retry_over_time(  # type: ignore[no-untyped-call]  # missing keys: ensure()'s defaults
            self._send_again,
            connected.connection.connection_errors,  # not an error reply: a refusal
            max_retries=policy.get("max_retries"),
            interval_start=policy.get("interval_start", 1),
            interval_step=policy.get("interval_step", 1),
            interval_max=policy.get("interval_max", 1),
        )

    def _send_again(self) -> None:
        if self._pipeline is None:  # the last send lost its connection: a fresh pipeline
            self._pipeline = self._client.pipeline(transaction=False)
            for name, args in self._calls:
                getattr(self._pipeline, name)(*args)
        try:
            self.send()
        finally:
            self._pipeline = None
