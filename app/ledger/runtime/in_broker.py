"""Whether the messages of queued jobs are still in the broker: waiting in a queue, or
held by a worker (reserved, prefetched or running).

Usage::

    from app.ledger.runtime import in_broker

    gone = in_broker.without_message(jobs)   # those whose message is provably not there
    in_broker.message_in_broker(task_id, queue)

``jobs`` are anything with a ``celery_task_id`` and a ``queue`` (:class:`Sought`). Two
callers must not fail a job whose message may still run: the lifeline, before it fails a
queued job that waited past its timeout (:mod:`app.ledger.operations.lifeline`), and the
bulk publish, before it fails a job whose message went out on a connection lost
mid-chunk (:mod:`app.ledger.runtime.publishing`). Both ask here, so "not in the broker"
is decided one way:

- **Redis**: not in any list of its queue (the recorded one, then every queue a worker
  consumes: one list per priority level) nor in kombu's ``unacked`` hash, where a worker
  holds every message it reserved until it acknowledges it (``task_acks_late``: after the
  job's outcome is in the ledger). Each list and the hash are read once for all the jobs;
  a message is known by its task id, Celery's ``headers['id']`` (message protocol 2).
- **RabbitMQ** cannot be searched for one message without taking it: a job's message is
  gone only when its queue and every queue the workers consume hold no ready message
  (passive declares count them) and no live worker holds its task id (one ``query_task``
  broadcast, :func:`app.ledger.runtime.liveness.held_by_live_workers`). A queue with
  messages in it may hold this one: the job counts as in the broker (never fail on
  doubt; on a busy broker a job is found missing only once the queues drain).
- any other broker: always counted as in the broker.

A message a worker has just taken is in neither place for a moment (Redis: kombu's BRPOP,
then its reservation, in two round trips; RabbitMQ: delivered, not yet registered), so a
job found missing is looked for once more after :data:`IN_TRANSIT_GRACE`: only one
missing both times is reported. A broker that cannot be reached raises: the caller
decides what doubt means for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from amqp.exceptions import NotFound
from celery import Celery

from app import brokers
from app.ledger.operations import reservations
from app.ledger.runtime import liveness
from app.queues import queue_names, redis_keys

#: Messages read per round trip when scanning a Redis queue or the ``unacked`` hash.
SCAN_CHUNK = 1000
#: Seconds before looking for a missing message once more: a message a worker has just
#: popped from its queue is in neither the queue nor ``unacked`` until the worker records
#: its reservation (kombu's BRPOP, then HSET, in two round trips).
IN_TRANSIT_GRACE = 1.0


class Sought(Protocol):
    """A job's message to look for: its task id, and the queue it was sent to."""

    @property
    def celery_task_id(self) -> str | None: ...

    @property
    def queue(self) -> str | None: ...


S = TypeVar("S", bound=Sought)


def _app() -> Celery:
    from app.celery import app  # late: app.celery imports the task base, which uses this

    return app


def without_message(jobs: Sequence[S], broker: str | None = None) -> list[S]:
    """The ``jobs`` whose message is provably not in ``broker`` (a URL; default: the app's),
    looked for twice, :data:`IN_TRANSIT_GRACE` apart (one wait for all of them: thousands
    of jobs of a producer killed mid-``apply_many`` once waited a second each).

    Raises:
        Exception: the broker's error when it cannot be asked.
    """
    first_look = _missing(jobs, broker)
    if not first_look:
        return []
    time.sleep(IN_TRANSIT_GRACE)  # the worker's reservation lands meanwhile, or its start
    return _missing(first_look, broker)


def message_in_broker(task_id: str, queue: str | None = None) -> bool:
    """Whether a message with ``task_id`` may still be in the app's broker (one look)."""
    return bool(_maybe_in_broker([task_id], [queue], None))


def _missing(jobs: Sequence[S], broker: str | None) -> list[S]:
    maybe = _maybe_in_broker([j.celery_task_id for j in jobs], [j.queue for j in jobs], broker)
    return [job for job in jobs if job.celery_task_id not in maybe]


def _maybe_in_broker(
    task_ids: Sequence[str | None], queues: Sequence[str | None], broker: str | None
) -> set[str]:
    """The task ids of ``task_ids`` that may still be in the broker (each sent to the
    queue at the same position of ``queues``)."""
    kind = brokers.kind(str(_app().conf.broker_url) if broker is None else broker)
    if kind not in ("redis", "rabbitmq"):
        return {task_id for task_id in task_ids if task_id}
    by_queue: dict[str | None, list[str]] = {}
    for task_id, queue in zip(task_ids, queues, strict=True):
        if task_id:
            by_queue.setdefault(queue, []).append(task_id)
    if kind == "rabbitmq":
        return _maybe_in_rabbitmq(by_queue, broker)
    return _in_redis(by_queue, broker)


def _looked_in(queue: str | None) -> list[str]:
    """The recorded queue first, then every queue a worker consumes: a chain step is
    routed by its own type, and a job recorded before queues per type has none."""
    return list(dict.fromkeys([*([queue] if queue else []), *queue_names()]))


@contextmanager
def _connected(broker: str | None) -> Iterator[Any]:
    with _app().connection_for_read(broker) as connection:
        yield connection


def _in_redis(by_queue: dict[str | None, list[str]], broker: str | None) -> set[str]:
    """The task ids found in a list of their queues or in ``unacked``: each list and the
    hash read once, whatever the number of jobs."""
    wanted = {task_id for ids in by_queue.values() for task_id in ids}
    lists = dict.fromkeys(key for queue in by_queue for key in redis_keys(_looked_in(queue)))
    found: set[str] = set()
    with _connected(broker) as connection:
        channel = connection.default_channel
        for name in lists:  # the lists first: a message a worker takes meanwhile is then
            found |= wanted & {_task_id(raw) for raw in _list_items(channel.client, name)}
        if found != wanted:  # in unacked (or in transit, for the second look)
            found |= wanted & reservations.held_task_ids(channel, SCAN_CHUNK)
    return found


def _task_id(raw: bytes) -> str | None:
    """A waiting message's task id (Celery's message protocol 2: ``headers['id']``)."""
    try:
        task_id = json.loads(raw)["headers"]["id"]
    except (ValueError, LookupError, TypeError):
        return None
    return task_id if isinstance(task_id, str) else None


def _list_items(client: Any, name: str) -> Iterator[bytes]:
    start = 0
    while True:
        chunk = client.lrange(name, start, start + SCAN_CHUNK - 1)
        yield from chunk
        if len(chunk) < SCAN_CHUNK:
            return
        start += SCAN_CHUNK


def _maybe_in_rabbitmq(by_queue: dict[str | None, list[str]], broker: str | None) -> set[str]:
    """Per queue: every task id when its queue (or a consumed one) holds a ready message;
    else those a live worker holds (one broadcast for all). Counted, asked, counted
    again: a message moving from a queue to a worker between the two looks is seen by
    one of them (a worker holds it until it is acknowledged, and an unacknowledged
    message only goes back to a queue)."""
    maybe: set[str] = set()
    asking: dict[str | None, list[str]] = {}
    for queue, ids in by_queue.items():
        if _rabbitmq_waiting(_looked_in(queue), broker):
            maybe.update(ids)
        else:
            asking[queue] = ids
    if asking:
        held = liveness.held_by_live_workers([i for ids in asking.values() for i in ids])
        for queue, ids in asking.items():
            waiting = _rabbitmq_waiting(_looked_in(queue), broker)
            maybe.update(ids if waiting else [i for i in ids if i in held.task_ids])
    return maybe


def _rabbitmq_waiting(queues: list[str], broker: str | None) -> bool:
    """Whether any of ``queues`` holds a ready message (passive declares: create nothing)."""
    with _connected(broker) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue, passive=True)
            except NotFound:
                continue  # no queue, no message (RabbitMQ closed the channel)
            channel.close()
            if declared.message_count:
                return True
    return False
