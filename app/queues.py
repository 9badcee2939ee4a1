"""The one place that knows queues: which queue each job type goes to, and which queues
a worker consumes.

Usage::

    queue_for("export")     # "export": JOBLEDGER_QUEUES, else the type's own, else "celery"
    queue_names()           # every queue a worker started without -Q consumes
    task_queues()           # the same as kombu Queues (Celery's ``task_queues``)

Each job type declares its default queue where it is made (``job_task("export", …,
queue="export")``, :func:`declare`); ``JOBLEDGER_QUEUES`` (a JSON object type -> queue)
overrides it; a type that declares none goes to :data:`DEFAULT_QUEUE`, Celery's own
default name ``celery``. Kept on purpose: messages published before queues per type
existed wait in ``celery``, and a default worker still consumes it.

The families the project's job types use are listed in :data:`FAMILIES`, so that the
queues are known before any task module is imported (Celery builds a worker's queues
from ``task_queues`` once); a module that declares a queue outside them adds it to the
app's queues when it is imported (before a worker sets up its consumers).

**Priorities.** One scale for users: ``0`` (least urgent) to ``9`` (most urgent), default
:data:`DEFAULT_PRIORITY`; per type in ``JOBLEDGER_PRIORITIES``, per job with
``apply_async(priority=…)``. Brokers disagree on the direction: RabbitMQ delivers the
highest number first, kombu's Redis emulation the lowest first (one Redis list per level,
``priority_steps``; BRPOP reads the levels in order). :func:`broker_priority` is the one
place that maps the user's value onto the broker's; the ledger records the user's.

Routing is done twice, on purpose and with one answer: :class:`~app.ledger.runtime.task.
JobTask` names the queue in ``apply_async`` so that the ledger records it at ``queued``,
and :func:`route_task` (Celery's ``task_routes``) routes every other publish of a job
type by the same rule: chain steps (each by its own type), ``send_task``, signatures.
"""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from app.brokers import kind, queue_arguments
from app.config import QUEUE_NAME, settings

#: Queue of job types that declare none, and of plain tasks (Celery's default name).
DEFAULT_QUEUE = "celery"
#: What kombu puts between a queue's name and a priority level in a Redis key.
PRIORITY_SEPARATOR = "\x06\x16"
#: The queues of the project's job families (see the table in docs/operations.md).
FAMILIES = (
    "import",
    "export",
    "sync",
    "snapshots",
    "validation",
    "tests",
    "interfaces",
    "maintenance",
)

#: The user-facing priority scale (most urgent is the highest number) and its default.
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 9, 5
#: kombu's Redis priority levels: all ten, so that every user priority is its own level
#: (kombu's default, [0, 3, 6, 9], would fold 7 and 8 into one).
PRIORITY_STEPS = list(range(MIN_PRIORITY, MAX_PRIORITY + 1))

#: Job type -> the queue its module declared (``job_task(…, queue=…)``).
_declared: dict[str, str] = {}


def declare(job_type: str, queue: str) -> None:
    """Record ``queue`` as ``job_type``'s default queue (called by ``job_task``).

    Raises:
        ValueError: ``queue`` is not a queue name.
    """
    if not QUEUE_NAME.match(queue):
        raise ValueError(f"job type {job_type!r}: {queue!r} is not a queue name")
    _declared[job_type] = queue
    _add_to_app(queue_for(job_type))


def queue_for(job_type: str) -> str:
    """The queue ``job_type``'s jobs are sent to (``JOBLEDGER_QUEUES``, else the type's
    declared queue, else :data:`DEFAULT_QUEUE`)."""
    return settings().queues.get(job_type) or _declared.get(job_type) or DEFAULT_QUEUE


def queue_names() -> list[str]:
    """Every queue a worker started without ``-Q`` consumes: the default one, the
    families, and every queue a type declares or ``JOBLEDGER_QUEUES`` names."""
    names = [DEFAULT_QUEUE, *FAMILIES, *_declared.values(), *settings().queues.values()]
    return list(dict.fromkeys(names))  # in that order, each once


def make_queue(name: str) -> Queue:
    """The kombu queue ``name``: a direct exchange of the same name, routing key the
    name (Celery's own shape), with the broker's queue arguments (:mod:`app.brokers`)."""
    exchange = Exchange(name)  # type: ignore[no-untyped-call]
    arguments = queue_arguments() or None
    return Queue(name, exchange, routing_key=name, queue_arguments=arguments)  # type: ignore[no-untyped-call]


def task_queues() -> list[Queue]:
    """Celery's ``task_queues``: one :func:`make_queue` per name of :func:`queue_names`."""
    return [make_queue(name) for name in queue_names()]


def priority_for(job_type: str) -> int:
    """``job_type``'s default priority (``JOBLEDGER_PRIORITIES``, else 5)."""
    return settings().priorities.get(job_type, DEFAULT_PRIORITY)


def broker_priority(priority: int, broker_url: str | None = None) -> int:
    """The message priority the broker of ``broker_url`` (default: this process's) needs
    for the user's ``priority`` (0 least .. 9 most urgent). RabbitMQ (``amqp``) delivers
    higher numbers first: the value as is (queues declared with ``x-max-priority``, see
    :mod:`app.brokers`). Redis (and the other kombu virtual transports) deliver lower
    numbers first: ``9 - priority``."""
    if kind(broker_url) == "rabbitmq":
        return priority
    return MAX_PRIORITY - priority


def transport_options(broker_url: str | None = None) -> dict[str, Any]:
    """What the broker's transport needs for priorities (Celery's
    ``broker_transport_options``): on Redis, one list per level (:data:`PRIORITY_STEPS`).
    ``queue_order_strategy`` stays kombu's ``round_robin``: the levels come first in the
    BRPOP kombu sends (every queue at level 0, then every queue at level 1…), so a more
    urgent job is taken first whatever its queue, and at one level the queues take turns
    (``priority`` would always drain the first queue of ``-Q`` before the next)."""
    if kind(broker_url) == "redis":
        return {"priority_steps": PRIORITY_STEPS}
    return {}


def redis_keys(names: list[str] | None = None) -> list[str]:
    """The Redis lists that hold the messages of queues ``names`` (default: every queue
    of :func:`queue_names`): kombu keeps one list per priority level, ``<queue>`` and
    ``<queue>\\x06\\x16<level>`` (the lifeline looks in them, the tests empty them)."""
    keys = []
    for name in queue_names() if names is None else names:
        keys += [name, *(f"{name}{PRIORITY_SEPARATOR}{level}" for level in range(1, 10))]
    return keys


def waiting(client: Any, queue: str) -> int:
    """Messages waiting in Redis queue ``queue``, every priority level counted (a job at
    the default priority waits in ``<queue>\\x06\\x164``, not in ``<queue>``).
    ``client``: a redis-py client of the broker's database."""
    return sum(int(client.llen(key)) for key in redis_keys([queue]))


def route_task(
    name: str, args: Any, kwargs: Any, options: dict[str, Any], task: Any = None, **_: Any
) -> dict[str, str] | None:
    """Celery router (``task_routes``): a job type's message goes to :func:`queue_for`.
    A queue given to ``apply_async(queue=…)`` wins (Celery merges the options over it)."""
    if name in _declared or name in settings().queues:
        return {"queue": queue_for(name)}
    return None


def _add_to_app(queue: str) -> None:
    """Make a queue outside :data:`FAMILIES` known to the app's queues, so that a
    worker without ``-Q`` consumes it too (Celery reads ``task_queues`` once)."""
    from app.celery import app  # late: app.celery builds its settings from this module

    queues = app.amqp.queues
    if queue not in queues:
        queues.add(make_queue(queue))
