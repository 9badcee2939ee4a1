"""Publishing the message of one job ``delay()``/``apply_async`` has just recorded.

Usage::

    from app.ledger.runtime.single_publish import publish_one

    result = publish_one(app, Outgoing(task=..., job_id=..., kwargs=..., ...), actor=actor)

The caller has committed the job's row and its ``queued`` event. On Redis and on
RabbitMQ the message takes the bulk path's machinery for one message
(:mod:`app.ledger.runtime.publishing`): Celery's own message, made by
``app.amqp.create_task_message`` and published by ``app.amqp.send_task_message``
(``before_task_publish``/``after_task_publish``, the task-sent event Flower reads), the
same bytes as ``Task.apply_async`` makes, gathered and sent with its task-sent event:

- **Redis**: in one pipeline (no MULTI) over a ``redis.Redis`` client held per
  connection pool. Both replies are read.
- **RabbitMQ**: written in one run (:class:`~app.ledger.runtime.amqp_frames.PublishFrames`)
  on a channel in confirm mode held per connection (:class:`_OneConfirmed`), then both
  publisher confirms are awaited together: one round trip, where Celery's
  ``confirm_publish`` waits for the message's confirm, then publishes the event and
  waits for its confirm. The delivery tags go on across publishes (the channel's next
  tag is kept, :class:`~app.ledger.runtime.confirms.Confirms` ``first_tag``); the
  channel is kept only after a publish whose every confirm came, and what the broker
  sent meanwhile is read before it is used again (py-amqp reads it before every
  publish), so a connection the broker closed is found before anything is written and
  the publish goes through ``Task.apply_async``, which reconnects. Measured in
  benchmarks/RESULTS.md ("RabbitMQ ``delay()`` on a held confirm channel").

Why, on Redis: kombu 5.7's Redis transport makes a new ``redis.Redis`` client for every command it
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
  the same waits); if it still fails, the message may have arrived: the job is failed
  only if it is provably not in the broker, as for the bulk path
  (:func:`~app.ledger.runtime.publishing.record_unsure`: a message waiting in its queue
  or held by a worker keeps its job ``queued``), and the error is raised, as kombu's
  OperationalError;
- a refusal (an error reply: a queue key of another type, ``maxmemory``; a RabbitMQ
  ``basic.nack``: a queue full under ``overflow: reject-publish``) fails the job saying
  why (:func:`~app.ledger.runtime.publishing.record_unpublished`) and is raised;
- on RabbitMQ a message is never written twice: one whose frames were not all written
  never reached the broker (the job fails), one written but not confirmed when the
  connection is lost or :data:`~app.ledger.runtime.publishing.CONFIRM_TIMEOUT` passes
  may have arrived (the job is looked for in the broker, as above). Celery's
  ``confirm_publish`` would publish it again on a new connection, twice if it had
  arrived.

``after_task_publish`` fires once the message is handed to the pipeline, just before the
round trip that sends it (as on the bulk path); a send that then fails raises from
``delay()``, as a failed task-sent event does after that signal in plain Celery. A plain
``delay()`` (no idempotency key, not a definition's firing) takes its producer from the
pool and builds the message while its row is committed (:class:`OnePublish`,
:func:`app.ledger.transitions.record_queued_meanwhile`): both signals then fire before
the commit is known, and if the ledger write fails ``delay()`` raises and nothing is
sent. The message itself, and its task-sent event after it in the same pipeline or run,
leave only after the commit: Flower never hears of a job whose message was not sent. (On
RabbitMQ the event is written before the message's confirm is read: a message the broker
then refuses has had its task-sent event, and its job is ``failed`` in the ledger,
saying why.)

Anything else goes through ``Task.apply_async`` as before: another broker,
``task_always_eager``, an option the bulk path's sender does not take (``countdown``,
``producer``, ``retry``…), a task it does not make messages for (``expires``, v2
compatibility), a parent task whose priority is inherited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from amqp.channel import Channel as AmqpChannel
from celery import Celery
from celery.result import AsyncResult
from kombu.messaging import Producer
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.functional import retry_over_time

from app.ledger import transitions as ledger
from app.ledger.runtime.publishing import (
    SENDER_OPTIONS,
    ConfirmedBatch,
    Outgoing,
    RedisBatch,
    Sender,
    apply_celery,
    record_unpublished,
    record_unsure,
)

#: The held client of each kombu connection pool (see the module docstring).
_clients: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()
#: The entities declared on each channel (:attr:`_Gathering._declared`).
_declared: WeakKeyDictionary[Any, list[Any]] = WeakKeyDictionary()
#: The held confirm channel of each RabbitMQ connection (py-amqp's), see :class:`_HeldChannel`.
_held: WeakKeyDictionary[Any, _HeldChannel] = WeakKeyDictionary()


def publish_one(app: Celery, message: Outgoing, *, actor: ledger.Actor) -> AsyncResult:
    """Publish the message of one recorded job; see the module docstring.

    Raises:
        Exception: the broker's error, after the job is recorded ``failed`` saying why
            (unless its message reached the broker: an error reply to its event only).
    """
    with OnePublish(app, message, actor=actor) as publish:
        publish.build()
        return publish.send()


class OnePublish:
    """:func:`publish_one` in two halves, so that the message can be built while the
    job's row is committed (:func:`app.ledger.transitions.record_queued_meanwhile`):
    :meth:`build` makes it (Celery's message, the publish signals, kombu's preparation
    into the pipeline: nothing is sent), :meth:`send` sends it. Leaving the ``with``
    block without :meth:`send` sends nothing."""

    def __init__(self, app: Celery, message: Outgoing, *, actor: ledger.Actor) -> None:
        self.app, self.message, self.actor = app, message, actor
        self._stack = contextlib.ExitStack()
        self._connected: Producer | None = None  # None: Celery's own path
        self._batch: _OneMessage | _OneConfirmed | None = None
        self._built: AsyncResult | None = None
        self._error: Exception | None = None

    def __enter__(self) -> OnePublish:
        return self

    def build(self) -> None:
        """Take a producer from the app's pool, make the message and gather it (and its
        task-sent event) into the pipeline or run. Never raises: an error is raised by
        :meth:`send`, the job failed first."""
        app, message = self.app, self.message
        if app.conf.task_always_eager or not message.options.keys() <= SENDER_OPTIONS:
            return
        try:
            connected = self._stack.enter_context(app.producer_or_acquire())
        except Exception:  # Celery's path takes a producer itself, and says why if it cannot
            return
        self._connected = connected
        try:
            channel = connected.channel
            if not isinstance(channel, RedisChannel | AmqpChannel):
                return  # another broker: Celery's own publish
            sender = Sender(self.app)
            if not sender.makes(self.message):
                return  # a message the sender does not make: Celery's own publish
            if isinstance(channel, RedisChannel):
                batch: _OneMessage | _OneConfirmed = _OneMessage(connected, held_client(channel))
            else:
                try:
                    batch = _OneConfirmed(connected)
                except connected.connection.connection_errors:
                    return  # a connection gone since its last use: Celery's path reconnects
            self._batch = batch
            self._stack.enter_context(batch)
            # the queues and exchanges declared on this channel: kombu remembers them per
            # connection too, but checks each again per message (a bind and copies of it)
            batch.producer._declared = _declared.setdefault(batch.producer.channel, [])
            batch.current = self.message.job_id
            self._built = sender(self.message, batch.producer)
            batch.current = None
            sender.events.flush(batch.producer)  # after the message, in its pipeline
        except Exception as error:
            self._error = error

    def send(self) -> AsyncResult:
        """Send what :meth:`build` made (or publish through ``Task.apply_async``).

        Raises:
            Exception: the broker's error, the job failed first (see :func:`publish_one`).
        """
        message, batch, connected = self.message, self._batch, self._connected
        since = datetime.now(UTC)
        try:
            if self._error is not None:
                raise self._error
            if batch is None or self._built is None or connected is None:
                producer = connected or message.options.get("producer")  # Celery's path
                options = {k: v for k, v in message.options.items() if k != "producer"}
                return apply_celery(
                    self.app, dataclasses.replace(message, options=options), producer
                )
            with connected.connection._reraise_as_library_errors():
                batch.send_retrying(self.app, connected)
            return self._built
        except Exception as error:
            if batch is not None and message.job_id in batch.unsure - batch.sent:
                record_unsure([message], error, self.actor, None, since)  # it may have arrived
            elif batch is None or message.job_id not in batch.sent:
                record_unpublished([message.job_id], error, self.actor)
            raise

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def held_client(channel: RedisChannel) -> Any:
    """kombu's Redis client of ``channel``'s connection pool, made once per pool."""
    pool = channel.pool
    client = _clients.get(pool)
    if client is None:
        client = _clients[pool] = channel._create_client()  # type: ignore[no-untyped-call]
    return client


class _OneMessage(RedisBatch):
    """The bulk path's Redis batch for one job's messages, on a held client, with the
    commands kept so that a pipeline lost with its connection can be sent again."""

    def __init__(self, connected: Producer, client: Any) -> None:
        super().__init__(connected)
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


class _HeldChannel:
    """A RabbitMQ channel in confirm mode kept open on its connection for the next single
    publish, and the delivery tag its next publish gets (tags go on across publishes)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.next_tag = 1


class _OneConfirmed(ConfirmedBatch):
    """The bulk path's RabbitMQ batch for one job's message and its task-sent event, on a
    confirm channel held per connection (:data:`_held`): both are written in one run and
    their two confirms awaited together, one round trip where ``confirm_publish`` makes
    two (and the bulk path opens and closes a channel of its own). The channel is kept
    only after a publish whose every confirm came: a timeout, a lost connection or an
    error drops (and closes) it, so a late answer never reaches a later publish."""

    def _confirm_channel(self, connected: Producer) -> tuple[Any, int]:
        self._connection = connection = connected.connection.connection  # py-amqp's
        held = _held.get(connection)
        if held is not None:
            # what the broker sent since the last publish (py-amqp reads it before every
            # publish too): a connection it closed raises here, before anything is written
            with contextlib.suppress(socket.timeout):
                connection.drain_events(timeout=0)
        if held is None or not held.channel.is_open:
            channel, _ = super()._confirm_channel(connected)
            held = _held[connection] = _HeldChannel(channel)
        self._held = held
        return held.channel, held.next_tag

    def send_retrying(self, app: Celery, connected: Producer) -> None:
        """Send once: a publish is never written again (a message written but not
        confirmed may have arrived: its job is looked for, :func:`record_unsure`)."""
        self.send()

    def _release(self, channel: Any) -> None:
        if self.confirms.complete and channel.is_open:
            self._held.next_tag = self.confirms.next_tag
            return
        if _held.get(self._connection) is self._held:
            del _held[self._connection]
        super()._release(channel)
