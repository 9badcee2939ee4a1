"""What differs between the brokers jobledger runs on: Redis, RabbitMQ, the filesystem.

Usage::

    from app import brokers

    brokers.kind()                # "redis" | "rabbitmq" | "filesystem" | "other"
    brokers.queue_arguments()     # the arguments every task queue is declared with
    brokers.transport_options()   # Celery's ``broker_transport_options``

Everything else (the app, :mod:`app.queues`, the lifeline) asks here instead of looking
at the URL itself, so a broker is described in one place.

**RabbitMQ: classic durable queues with ``x-max-priority``, and publisher confirms.**
Quorum queues were the other choice. On the RabbitMQ this project targets (3.10) they
have no message priorities (those come with 4.0), and Celery's default global QoS
(``basic.qos`` with ``global=True``) is refused on them (``NOT_IMPLEMENTED``; Celery 5.5+
detects them and falls back to per-consumer prefetch). Their gain, replication over a
cluster, needs three RabbitMQ nodes; with one node a classic durable queue keeps the
same promises: the queue and its persistent messages (Celery publishes with
``delivery_mode=2``) survive a broker restart, and an unacknowledged message goes back
to its queue when its consumer's connection closes. What a single node cannot give is
survival of the node's disk: run a cluster with quorum queues once the broker is 4.0 or
newer and priorities are not needed, by declaring the queues with
``x-queue-type: quorum`` (docs/operations.md, "Brokers").

``confirm_publish``: kombu waits for the broker's ``basic.ack`` of each publish, so a
``delay()`` that returns means the message is in the queue (on disk, for a durable queue
and a persistent message); a message the broker refuses or loses before it confirms
raises, and the producer records the job ``failed`` ("could not publish the job to the
broker: …") instead of leaving it ``queued`` with no message anywhere. The bulk path
(``apply_many``, ``POST /jobs/batch``) does not wait per message: it publishes a chunk on
a confirm-mode channel of its own and then waits once for the chunk's acks
(:mod:`app.ledger.runtime.publishing`).

``x-max-priority`` is fixed when a queue is first declared: RabbitMQ refuses to declare
an existing queue again with other arguments (``PRECONDITION_FAILED - inequivalent
arg``). Every process must therefore declare the same arguments, which is why they come
from this one function, and a queue made by an older release without them must be
deleted once (``rabbitmqctl delete_queue NAME -p VHOST``) after its messages are drained.

**Redis** needs its ``visibility_timeout`` (see :class:`app.config.Settings`); its
priorities are kombu's emulation (``priority_steps``), declared by :mod:`app.queues`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from app.config import LOCAL_DIR, settings

BrokerKind = Literal["redis", "rabbitmq", "filesystem", "other"]

#: Priority levels of a RabbitMQ queue (``x-max-priority``): messages carry 0..9, the
#: range RabbitMQ recommends staying within (each level costs the queue memory and CPU).
RABBITMQ_MAX_PRIORITY = 9

_SCHEMES: dict[str, BrokerKind] = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "pyamqp": "rabbitmq",
    "filesystem": "filesystem",
}


def kind(url: str | None = None) -> BrokerKind:
    """Which broker ``url`` (default: this process's ``JOBLEDGER_BROKER_URL``) names."""
    url = settings().broker() if url is None else url
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    return _SCHEMES.get(scheme, "other")


def queue_arguments(url: str | None = None) -> dict[str, Any]:
    """The ``queue_arguments`` of every task queue on this broker: ``x-max-priority`` on
    RabbitMQ (classic queues need it to honour message priorities), nothing elsewhere."""
    if kind(url) == "rabbitmq":
        return {"x-max-priority": RABBITMQ_MAX_PRIORITY}
    return {}


def transport_options(url: str | None = None) -> dict[str, Any]:
    """Celery's ``broker_transport_options`` for this broker (see the module docstring)."""
    broker = kind(url)
    if broker == "rabbitmq":
        return {"confirm_publish": True}
    options: dict[str, Any] = {"visibility_timeout": settings().visibility_timeout}
    if broker == "filesystem":
        folder = LOCAL_DIR / "broker"
        for name in ("queue", "control"):
            Path(folder / name).mkdir(parents=True, exist_ok=True)
        options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            control_folder=str(folder / "control"),
        )
    return options
