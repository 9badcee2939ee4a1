"""Publishing the messages of jobs the ledger has already recorded ``queued``.

Usage::

    from app.ledger.runtime.publishing import Outgoing, publish_recorded

    results = publish_recorded(app, [Outgoing(task=..., job_id=..., kwargs=..., ...)],
                               actor=actor)

The caller has committed every job's row and its ``queued`` event; this only sends the
messages, of any mix of task types (:meth:`JobTask.apply_many`, ``POST /jobs/batch``).

Each message is Celery's own: ``app.amqp.create_task_message`` makes it (routing,
headers, time limits, the redacted ``argsrepr``/``kwargsrepr``) and
``app.amqp.send_task_message`` publishes it (``before_task_publish``/``after_task_publish``,
the task-sent event Flower reads), with the options ``Task.apply_async`` would give them
and in the same order, so the bytes are the same: what is the same for every message (the
task's execution options, the parent task, the conf, the origin) is found once per call
(:class:`Sender`; a message with another option goes through ``Task.apply_async``).
kombu prepares it, but a gathering producer hands it to a batch instead of sending it.
The task-sent events (each one Celery's) of a batch go after its messages in one message,
the form a worker gives its buffered task events (:class:`_SentEvents`): one publish per
batch instead of one per job, half the messages. Batches of :data:`BATCH` jobs go out per
broker:

- **Redis**: kombu's virtual transport routes each message through its
  ``_publish_batch`` hook (the LPUSH to the list of the message's priority,
  ``_q_for_pri``; the events' PUBLISH), and the batch sends them in one pipeline
  without MULTI: one round trip. Each reply is read: an error reply (a key of the
  wrong type, ``maxmemory``) refuses exactly that message.
- **RabbitMQ**: the batch is published on a channel of its own in confirm mode, its
  frames (py-amqp's bytes, encoded faster: :mod:`app.ledger.runtime.amqp_frames`)
  written in runs of :data:`READ_EVERY` messages (at most :data:`RUN_BYTES`), then
  the broker's ``basic.ack``/``basic.nack`` are awaited once (``confirm_publish`` waits
  after every message). A pooled connection the broker closed since its last use (a
  restart) is replaced before the chunk's first message (:func:`_open_batch`).
- any other broker, or ``task_always_eager``: one ``apply_async`` after the other.

What is left undone is never left ``queued`` silently: the jobs whose message was
refused, and every job after them, are failed saying why (:func:`record_unpublished`)
and the error is raised. If the connection is lost while a batch is sent (a Redis
pipeline whose replies never came; RabbitMQ publishes not yet confirmed), those messages
may or may not have arrived: each is looked for in the broker, as the lifeline looks
(:mod:`app.ledger.runtime.in_broker`), and only a job whose message is provably not
there is failed (:func:`record_unsure`). One waiting in its queue, or held by a worker
(which took it meanwhile and will start it: its lazy start may not be written yet), stays
``queued`` and runs. If the broker cannot be asked (still down), they all stay
``queued``: failing them could fail a job whose body runs, and the lifeline fails a
queued job whose message is not in the broker after ``JOBLEDGER_LIFELINE_TIMEOUT``. A
producer killed mid-publish leaves jobs ``queued`` with no message: the lifeline fails
them (:mod:`app.ledger.operations.lifeline`, tests/faults/test_bulk_kill.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from amqp.exceptions import MessageNacked
from celery import Celery, Task
from celery.result import AsyncResult
from celery.utils.nodenames import anon_nodename
from kombu.messaging import Producer

from app import brokers
from app.ledger import idempotency
from app.ledger import transitions as ledger
from app.ledger.runtime import in_broker
from app.ledger.runtime.amqp_frames import PublishFrames
from app.ledger.runtime.confirms import Confirms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outgoing:
    """The message of one recorded job.

    ``options`` are Celery's per-message ``apply_async`` options: ``queue``,
    ``priority``, ``time_limit``/``soft_time_limit``, ``argsrepr``/``kwargsrepr``
    (:func:`~app.ledger.runtime.celery_redaction.payload_reprs`)…; ``headers`` include
    the ledger header (:class:`~app.ledger.runtime.target.JobTarget`).
    """

    task: str
    job_id: uuid.UUID
    kwargs: dict[str, Any]
    headers: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    task_id: str | None = None  # default: str(job_id)

    @property
    def message_id(self) -> str:
        return self.task_id or str(self.job_id)


def publish_recorded(
    app: Celery,
    messages: Sequence[Outgoing],
    *,
    producer: Producer | None = None,
    actor: ledger.Actor,
) -> list[AsyncResult]:
    """Publish the messages of recorded jobs over one producer, in order.

    On Redis and RabbitMQ they go in batches of :data:`BATCH` (one pipeline of LPUSHes,
    or one run of publishes followed by the broker's confirms); elsewhere, or with
    ``task_always_eager``, one publish each.

    Raises:
        Exception: the broker's error for the first message it refused, after every
            job whose message was not sent is recorded ``failed`` (:func:`record_unpublished`).
    """
    results: list[AsyncResult] = []
    with app.producer_or_acquire(producer) as connected:
        broker = brokers.kind(connected.connection.as_uri())
        if app.conf.task_always_eager or broker not in ("redis", "rabbitmq"):
            for position, message in enumerate(messages):
                try:
                    results.append(apply_celery(app, message, connected))
                except Exception as error:
                    record_unpublished([m.job_id for m in messages[position:]], error, actor)
                    raise
            return results
        send = Sender(app)
        for first in range(0, len(messages), BATCH):
            batch: _Batch | None = None
            since = datetime.now(UTC)
            try:
                batch = _open_batch(app, connected, broker, messages[first].options)
                with batch:
                    for message in messages[first : first + BATCH]:
                        batch.current = message.job_id
                        results.append(send(message, batch.producer))
                    batch.current = None
                    send.events.flush(batch.producer)
                    batch.send()
            except Exception as error:  # nothing of this chunk sent, or only part of it
                sent = set() if batch is None else batch.sent
                unsure = set() if batch is None else batch.unsure - sent
                unsent = [m.job_id for m in messages[first:] if m.job_id not in sent | unsure]
                record_unpublished(unsent, error, actor)
                maybe = [m for m in messages[first : first + BATCH] if m.job_id in unsure]
                record_unsure(maybe, error, actor, connected.connection.as_uri(True), since)
                raise
    return results


def _open_batch(app: Celery, connected: Producer, broker: str, options: dict[str, Any]) -> _Batch:
    """The batch of the next chunk. On RabbitMQ opening it opens a confirm channel, the
    first use of the pooled connection: one the broker closed since it was last used (a
    restart) fails there, so it is opened again on a fresh connection, as
    ``Task.apply_async`` publishes again (its ``retry``/``retry_policy`` options, default
    ``task_publish_retry`` and its policy; kombu's ``Connection.ensure`` reconnects and
    revives the producer). Nothing of the chunk is sent before the channel is open:
    trying again sends nothing twice. ``options``: the chunk's first message's."""
    if broker == "redis":
        return RedisBatch(connected)
    if not options.get("retry", app.conf.task_publish_retry):
        return ConfirmedBatch(connected)
    policy = dict(options.get("retry_policy") or app.conf.task_publish_retry_policy or {})
    opened: _Batch = connected.connection.ensure(
        connected, lambda: ConfirmedBatch(connected), **policy
    )()
    return opened


#: Messages sent per round trip (Redis pipeline) or per wait for the broker's confirms.
BATCH = 1000
#: Seconds RabbitMQ has to confirm a batch before its unconfirmed jobs are failed.
CONFIRM_TIMEOUT = 30.0
#: RabbitMQ: publishes between two reads of the frames the broker sent meanwhile.
READ_EVERY = 100
#: Bytes of frames a RabbitMQ batch holds before it writes them (large bodies: a run
#: stays this small whatever the messages weigh).
RUN_BYTES = 1 << 20


def apply_celery(app: Celery, message: Outgoing, producer: Producer | None) -> AsyncResult:
    """Celery's own publish of one message (``Task.apply_async``, not the job task's,
    which would record the job again): routing, the message, its task-sent event."""
    return Task.apply_async(
        app.tasks[message.task],
        (),
        message.kwargs,
        task_id=message.message_id,
        producer=producer,
        headers=message.headers,
        **message.options,
    )


#: The ``apply_async`` options :class:`Sender` takes; with any other, ``apply_async`` runs.
SENDER_OPTIONS = frozenset(
    {"queue", "priority", "time_limit", "soft_time_limit", "argsrepr", "kwargsrepr"}
)


class Sender:
    """``Task.apply_async`` → ``app.send_task`` for many messages, step for step, minus
    what is the same for every message, found once: the task's checks and its execution
    options, the parent task, the conf, the origin (this process's node name, which the
    message maker looks up per message). The message is Celery's own
    (``app.amqp.create_task_message``), published by Celery's own
    ``app.amqp.send_task_message`` (the publish signals, the task-sent event), with the
    same options in the same order: the bytes a worker consumes are the same. A message
    with an option it does not take (``countdown``, ``expires``…), a task with
    ``expires``, pydantic arguments or v2 compatibility, or a parent task whose priority
    is inherited goes through :func:`apply_celery`."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.amqp = app.amqp
        self.create = app.amqp.create_task_message
        self.publish = app.amqp.send_task_message
        self.router = app.amqp.router
        self.backend = app.backend
        self.sent_event = app.conf.task_send_sent_event
        self.reply_to = app.thread_oid
        self.origin = anon_nodename()  # what the message maker finds for each when not given
        self.parent = app.current_worker_task
        self.root_id = self.parent_id = None
        if self.parent is not None:
            self.root_id = self.parent.request.root_id or self.parent.request.id
            self.parent_id = self.parent.request.id
        self.fast = self.parent is None or not app.conf.task_inherit_parent_priority
        self.tasks: dict[str, tuple[Task, dict[str, Any]] | None] = {}
        self.events = _SentEvents(app)

    def _task(self, name: str) -> tuple[Task, dict[str, Any]] | None:
        if name not in self.tasks:
            task = self.app.tasks[name]
            preopts = task._get_exec_options()
            plain = (
                not task.__v2_compat__
                and task._dump_pydantic_arguments is None
                and preopts.get("expires") is None
            )
            self.tasks[name] = (task, preopts) if plain else None
        return self.tasks[name]

    def makes(self, message: Outgoing) -> bool:
        """Whether this sender makes ``message`` itself (else :func:`apply_celery` does)."""
        return self._known(message) is not None

    def _known(self, message: Outgoing) -> tuple[Task, dict[str, Any]] | None:
        """``message``'s task and its execution options when this sender makes it."""
        if not self.fast or not message.options.keys() <= SENDER_OPTIONS:
            return None
        return self._task(message.task)

    def __call__(self, message: Outgoing, producer: Producer) -> AsyncResult:
        known = self._known(message)
        if known is None:
            return apply_celery(self.app, message, producer)
        task, preopts = known
        args: tuple[Any, ...] = ()
        kwargs = message.kwargs
        # Task.apply_async
        if task.soft_time_limit and task.time_limit and task.soft_time_limit > task.time_limit:
            raise ValueError("soft_time_limit must be less than or equal to time_limit")
        if task.typing:
            check_arguments = getattr(task, "__header__", None)
            if check_arguments is not None:
                check_arguments(*args, **kwargs)
        given = {"headers": message.headers, **message.options}
        shadow = task.shadow_name(args, kwargs, given)
        options = dict(preopts, **given)
        options.setdefault("ignore_result", task.ignore_result)
        # app.send_task
        task_id = message.message_id
        time_limit = options.pop("time_limit", None)
        soft_time_limit = options.pop("soft_time_limit", None)
        options.pop("expires", None)
        ignore_result = options.pop("ignore_result", None)
        options = self.router.route(options, task.name, args, kwargs, task)
        made = self.create(
            task_id, task.name, args, kwargs, None, None, None, None, None, 0, None,
            None, None, self.reply_to, time_limit, soft_time_limit, self.sent_event,
            self.root_id, self.parent_id, shadow, None, origin=self.origin,
            ignore_result=ignore_result, replaced_task_nesting=0, **options,
        )  # fmt: skip
        for stamp in options.pop("stamped_headers", []):
            options.pop(stamp)
        with producer.connection._reraise_as_library_errors():
            if not ignore_result:
                self.backend.on_task_call(producer, task_id)
            self.publish(producer, task.name, made, event_dispatcher=self.events, **options)
        result = task.AsyncResult(task_id)
        result.ignored = ignore_result
        if self.parent is not None:
            self.parent.add_trail(result)
        return result


class _SentEvents:
    """The ``task-sent`` events of a chunk, sent together as one message after its task
    messages, in the form a worker sends its buffered task events (a list of events,
    routing key ``task.multi``: Celery's ``EventDispatcher.flush``), which Flower and every
    ``EventReceiver`` read as they read single events. Each event is the one Celery makes
    (``EventDispatcher.publish``: its clock, hostname, pid, fields); only the message
    carrying it changes: one for the chunk instead of one per job.

    Passed to ``send_task_message`` as its ``event_dispatcher``."""

    def __init__(self, app: Celery) -> None:
        self.dispatcher = app.amqp._event_dispatcher  # the one send_task_message uses
        self.pending: list[Any] = []
        self.retry: tuple[bool, Any] = (False, None)

    def publish(
        self,
        type: str,
        fields: dict[str, Any],
        producer: Producer,
        retry: bool = False,
        retry_policy: Any = None,
    ) -> None:
        self.pending.append(self.dispatcher._prepare_event(type, fields))
        self.retry = (retry, retry_policy)

    def flush(self, producer: Producer) -> None:
        """Publish the gathered events on ``producer``: one alone as Celery publishes a
        single event (its routing key, ``task.sent``), more as one ``task.multi``."""
        if not self.pending:
            return
        events, self.pending = self.pending, []
        retry, retry_policy = self.retry
        if len(events) == 1:
            body, key = events[0], events[0]["type"].replace("-", ".")
        else:
            body, key = events, "task.multi"
        self.dispatcher._publish(body, producer, key, retry=retry, retry_policy=retry_policy)


class _Gathering(Producer):
    """A producer that hands each message, once Celery made it and kombu prepared it
    (serialised, its queue declared), to its batch instead of sending it."""

    def __init__(self, channel: Any, batch: _Batch) -> None:
        super().__init__(channel)  # type: ignore[no-untyped-call]
        self.gatherer = batch
        self._declared: list[Any] = []  # queues and exchanges declared (kombu caches
        # them per connection too, but finds them again only after a copy of each)

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        """kombu's ``Producer.publish`` without its retry, whoever publishes here (the
        sender, ``Task.apply_async``, the chunk's events): this producer only prepares
        the message, the batch sends it, and on a lost connection kombu would reconnect
        and revive this producer on an ordinary channel, so the rest of the chunk would
        go out there, outside the batch (on RabbitMQ without confirms, whose wait then
        timed out). The batch fails instead; what it sent is unsure."""
        kwargs["retry"] = False
        return super().publish(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _publish(  # kombu's Producer._publish, minus the send
        self,
        body: Any,
        priority: Any,
        content_type: Any,
        content_encoding: Any,
        headers: Any,
        properties: Any,
        routing_key: str,
        mandatory: bool,
        immediate: bool,
        exchange: str,
        declare: Any,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        retry: bool = False,
        retry_policy: dict[str, Any] | None = None,
    ) -> None:
        channel = self.channel
        message = channel.prepare_message(
            body, priority, content_type, content_encoding, headers, properties
        )
        for entity in declare or ():
            if any(entity is seen for seen in self._declared):
                continue
            self._declared.append(entity)
            self.maybe_declare(entity, retry=retry, **(retry_policy or {}))  # type: ignore[no-untyped-call]
        self.gatherer.gather(message, exchange, routing_key, mandatory, immediate)


class _Batch:
    """The messages of one chunk: which job each belongs to (``current``, set before
    Celery publishes the job's message; None for the chunk's events), which were sent."""

    def __init__(self, connected: Producer) -> None:
        self.current: uuid.UUID | None = None
        self.sent: set[uuid.UUID] = set()
        #: Jobs whose message may or may not have reached the broker (connection lost).
        self.unsure: set[uuid.UUID] = set()
        self._jobs: list[uuid.UUID] = []  # the job of each task message, in order
        self.producer = _Gathering(self._channel(connected), self)

    def _channel(self, connected: Producer) -> Any:
        return connected.channel

    def _is_task_message(self) -> bool:
        """The first message of a job is its task message; later ones its events."""
        if self.current is None or (self._jobs and self._jobs[-1] == self.current):
            return False
        self._jobs.append(self.current)
        return True

    def gather(
        self, message: Any, exchange: str, key: str, mandatory: bool, immediate: bool
    ) -> None:
        raise NotImplementedError

    def send(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class RedisBatch(_Batch):
    """One pipeline (no MULTI) of the commands kombu's Redis transport would run for
    each message: ``LPUSH`` to the queue (the priority's own list, ``_q_for_pri``),
    ``PUBLISH`` of the chunk's task-sent events. kombu's virtual transport routes them through
    its ``_publish_batch`` hook, so keys and message bodies are exactly kombu's."""

    def __init__(self, connected: Producer) -> None:
        super().__init__(connected)
        self._commands: list[uuid.UUID | None] = []  # the job whose LPUSH each command is
        self._pipeline: Any = None

    def gather(
        self, message: Any, exchange: str, key: str, mandatory: bool, immediate: bool
    ) -> None:
        self._task = self._is_task_message()
        self.producer.channel.basic_publish(
            message, exchange=exchange, routing_key=key, _publish_batch=self
        )

    def add(self, name: str, *args: Any) -> None:  # kombu's ``_publish_batch`` hook
        if self._pipeline is None:
            with self.producer.channel.conn_or_acquire() as client:
                self._pipeline = client.pipeline(transaction=False)
        getattr(self._pipeline, name)(*args)
        self._commands.append(self._jobs[-1] if self._task and name == "lpush" else None)

    def send(self) -> None:
        if self._pipeline is None:
            return
        try:
            replies = self._pipeline.execute(raise_on_error=False)
        except Exception:
            self.unsure.update(self._jobs)  # lost mid-pipeline: some LPUSHes may have run
            raise
        refused: Exception | None = None
        for job, reply in zip(self._commands, replies, strict=True):
            if isinstance(reply, Exception):
                refused = refused or reply
            elif job is not None:
                self.sent.add(job)
        if refused is not None:
            raise refused

    def __exit__(self, *exc: object) -> None:
        if self._pipeline is not None:
            self._pipeline.reset()


class ConfirmedBatch(_Batch):
    """RabbitMQ: the chunk published on a channel of its own in confirm mode without
    waiting, then the broker's ``basic.ack``/``basic.nack`` collected (one wait for the
    whole chunk instead of one per message, as ``confirm_publish`` does), for at most
    :data:`CONFIRM_TIMEOUT`. Which channel, and what becomes of it after, are the two
    hooks a subclass changes (:meth:`_confirm_channel`, :meth:`_release`: the single
    ``delay()``'s held channel, :mod:`app.ledger.runtime.single_publish`)."""

    def _channel(self, connected: Producer) -> Any:
        self.connection = connected.connection
        #: The broker stopped answering (the wait for its confirms gave up): a graceful
        #: close of the channel would wait for it too.
        self.silent = False
        channel, first_tag = self._confirm_channel(connected)
        self.confirms: Confirms[uuid.UUID] = Confirms(first_tag)  # each task message's job
        self._answers = (
            functools.partial(self._confirm, ok=True),
            functools.partial(self._confirm, ok=False),
        )
        channel.events["basic_ack"].add(self._answers[0])
        channel.events["basic_nack"].add(self._answers[1])
        self.frames = PublishFrames(channel)
        return channel

    def _confirm_channel(self, connected: Producer) -> tuple[Any, int]:
        """The chunk's channel, in confirm mode, and the delivery tag of its next publish:
        a channel of its own, opened here (closed by :meth:`__exit__`)."""
        channel = connected.connection.channel()
        channel.confirm_select()
        channel._confirm_selected = True
        return channel, 1

    def gather(
        self, message: Any, exchange: str, key: str, mandatory: bool, immediate: bool
    ) -> None:
        job = self._jobs[-1] if self._is_task_message() else None
        # py-amqp's _basic_publish but for its read of the frames waiting before every
        # publish (a recv per message, as the broker offers connection.blocked) and its
        # write per message: every READ_EVERY publishes (or RUN_BYTES, large bodies),
        # their frames are written in one run and what waits is read (acks, nacks, a
        # channel closed); the rest is written before the confirms are awaited.
        self.frames.publish(message, exchange, key, mandatory, immediate)
        self.confirms.published(job)
        # counted in this batch: a held channel's tags do not start at 1
        if len(self.confirms) % READ_EVERY == 0 or self.frames.size >= RUN_BYTES:
            self._write()
            with contextlib.suppress(socket.timeout):
                self.producer.channel.connection.drain_events(timeout=0)

    def _confirm(self, tag: int, multiple: bool, *, ok: bool) -> None:
        self.confirms.answered(tag, multiple, ok=ok)

    def _write(self) -> None:
        """The frames waiting, on the socket; if that fails, the messages not written
        whole are withdrawn: they never reached the broker (not sent, not unsure)."""
        try:
            self.frames.flush()
        except Exception:
            self.confirms.withdrawn(self.frames.unwritten)
            raise

    def send(self) -> None:
        try:
            self._write()
            self._await_confirms()
        finally:
            self._settle()  # known at once (a caller may look before the batch's exit)
        refused = len(self.confirms.nacked())
        if refused:
            raise MessageNacked(f"RabbitMQ refused {refused} message(s) (basic.nack)")

    def _await_confirms(self) -> None:
        channel = self.producer.channel
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while not self.confirms.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                self.silent = True
                raise TimeoutError(
                    f"RabbitMQ did not confirm every message within {CONFIRM_TIMEOUT:g} s"
                )
            with contextlib.suppress(socket.timeout):
                channel.connection.drain_events(timeout=left)

    def _settle(self) -> None:
        """Whatever ended the chunk (all answered, a nack, the connection lost while
        publishing or waiting, the timeout): an unanswered publish may have arrived."""
        self.sent |= self.confirms.acked()
        self.unsure |= self.confirms.unanswered()

    def __exit__(self, *exc: object) -> None:
        self.confirms.withdrawn(self.frames.discard())  # never written: not sent
        channel = self.producer.channel
        channel.events["basic_ack"].discard(self._answers[0])
        channel.events["basic_nack"].discard(self._answers[1])
        self._release(channel)
        self._settle()

    def _release(self, channel: Any) -> None:
        """Done with the chunk's channel: closed; after the broker went silent, its whole
        connection is dropped without a word (the pool's next user connects again)."""
        if self.silent:
            self.connection.collect()
        else:
            _close_quietly(channel)


def _close_quietly(channel: Any) -> None:
    """Close a RabbitMQ channel; on a connection already gone there is nothing to close."""
    try:
        channel.close()
    except Exception:
        log.debug("could not close the confirm channel", exc_info=True)


def record_unpublished(
    job_ids: Iterable[uuid.UUID],
    error: Exception,
    actor: ledger.Actor,
    *,
    unless_started_since: datetime | None = None,
) -> None:
    """The broker refused the messages of recorded jobs: they fail, saying why, rather
    than wait ``queued`` for a message that will never come, and give back their
    idempotency keys (the caller was told it failed; its retry must create the job).

    ``unless_started_since``: the connection was lost while the messages were sent, and
    they were found not to be in the broker (:func:`record_unsure`); a job that shows a
    sign of life since then is left alone all the same.
    """
    reason = f"could not publish the job to the broker: {error}"
    if unless_started_since is not None:
        reason += (
            " (the connection was lost while it was sent, and its message is not in the broker)"
        )
    failed = [
        job_id
        for job_id in job_ids
        if ledger.record_failed(
            job_id, reason=reason, actor=actor, heartbeat_before=unless_started_since
        )
    ]
    if failed:
        idempotency.release(failed)


@dataclass(frozen=True)
class _Sought:
    """A message to look for in the broker (:class:`~app.ledger.runtime.in_broker.Sought`)."""

    job_id: uuid.UUID
    celery_task_id: str
    queue: str | None


def record_unsure(
    messages: Sequence[Outgoing],
    error: Exception,
    actor: ledger.Actor,
    broker: str | None,
    since: datetime,
) -> None:
    """The connection to ``broker`` (a URL; None: the app's) was lost while ``messages``
    were sent (``since``):
    each may or may not have arrived. Only the jobs whose message is provably not in the
    broker are failed (:func:`record_unpublished`); the others stay ``queued``.

    The broker is asked the lifeline's way (:func:`~app.ledger.runtime.in_broker.without_message`):
    a message waiting in its queue, or held by a worker — one that took it between the
    publish and this look, whose lazy start is not written yet, will start it — keeps
    its job. If the broker cannot be asked (still down), every job is left ``queued``:
    failing it could fail a job whose body runs, while the lifeline fails a queued job
    whose message is not in the broker once it has waited ``JOBLEDGER_LIFELINE_TIMEOUT``.
    """
    if not messages:
        return
    sought = [_Sought(m.job_id, m.message_id, m.options.get("queue")) for m in messages]
    try:
        missing = in_broker.without_message(sought, broker)
    except Exception:  # the broker's, whatever its class: it cannot tell yet
        log.warning(
            "the connection was lost while %d message(s) were sent and the broker cannot "
            "be asked which arrived: their jobs stay queued for the lifeline",
            len(sought),
            exc_info=True,
        )
        return
    record_unpublished([m.job_id for m in missing], error, actor, unless_started_since=since)
