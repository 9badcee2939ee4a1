"""Workers and queues, as Celery and the broker see them now, joined with the ledger.

- **Workers**: every worker that answers a ``ping`` within
  ``JOBLEDGER_WORKER_REPLY_TIMEOUT`` (the same verdict the lifeline uses, see
  :mod:`app.ledger.runtime.liveness`); then, asked only of those and returning as soon as
  each has answered, what each runs now (``inspect active``), its pool size and the
  queues it consumes. The tasks it runs are joined with the ledger by Celery task id and
  shown when they are this tenant's jobs; other tenants' jobs are not shown, not even
  counted (a tenant learns nothing of another's work): nor is a worker's count of tasks
  done, which counts every tenant's.
- **Queues**: every queue a default worker consumes (:func:`app.queues.queue_names`),
  with the messages waiting in it:
  ``queue_declare(passive=True)`` answers ``message_count`` on Redis and RabbitMQ alike
  (a passive declare creates nothing; a queue never used is reported as empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amqp.exceptions import ChannelError as AmqpChannelError
from fastapi import APIRouter, Request, Response
from kombu.exceptions import ChannelError, OperationalError
from starlette.concurrency import run_in_threadpool

from app import queues
from app.api.web.kit import page, to_login, viewer_of
from app.celery import app as celery_app
from app.config import settings
from app.ledger.reads import console

router = APIRouter()


@dataclass
class Worker:
    """A worker that answered, with what it runs now."""

    name: str
    concurrency: int | None = None
    queues: list[str] = field(default_factory=list)
    #: The caller's jobs among the tasks it runs now.
    jobs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class QueueLength:
    name: str
    #: Messages waiting (None: the broker could not be asked).
    messages: int | None
    consumers: int | None


def queue_lengths(names: list[str]) -> list[QueueLength]:
    """How many messages wait in each queue (one connection, a passive declare each)."""
    found: list[QueueLength] = []
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        for name in names:
            try:
                _, messages, consumers = channel.queue_declare(queue=name, passive=True)
            except (ChannelError, AmqpChannelError):  # never declared: nothing waits there
                found.append(QueueLength(name, 0, None))
                channel = connection.channel()  # AMQP closes the channel on a failed declare
                continue
            found.append(QueueLength(name, int(messages), consumers))
    return found


def workers(tenant: str) -> list[Worker]:
    """The workers that answer now, each with the tenant's jobs it runs."""
    timeout = settings().worker_reply_timeout
    replies = celery_app.control.ping(timeout=timeout) or []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        return []
    inspect = celery_app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    active = inspect.active() or {}
    stats = inspect.stats() or {}
    consumed = inspect.active_queues() or {}
    task_ids = [task["id"] for tasks in active.values() for task in tasks or []]
    jobs = {row["celery_task_id"]: row for row in console.jobs_by_task_ids(tenant, task_ids)}
    found = []
    for name in names:
        tasks = active.get(name) or []
        pool = (stats.get(name) or {}).get("pool") or {}
        found.append(
            Worker(
                name=name,
                concurrency=pool.get("max-concurrency"),
                queues=sorted(queue["name"] for queue in consumed.get(name) or []),
                jobs=[jobs[task["id"]] for task in tasks if task["id"] in jobs],
            )
        )
    return found


@router.get("/workers")
async def workers_page(request: Request) -> Response:
    """Live workers with what they run, and the queues with their lengths."""
    viewer = await run_in_threadpool(viewer_of, request)
    if viewer is None:
        return to_login(request)
    try:
        found = await run_in_threadpool(workers, viewer.identity.tenant)
        lengths = await run_in_threadpool(queue_lengths, queues.queue_names())
        broker_error = None
    except (OperationalError, OSError) as error:  # the page says so, naming no address
        found, lengths, broker_error = [], [], f"unreachable ({type(error).__name__})"
    return page(
        request,
        "workers.html",
        {"workers": found, "queues": lengths, "broker_error": broker_error},
        viewer=viewer,
    )
