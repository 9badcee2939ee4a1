"""Who is alive: the workers that answer a broadcast now, and what they hold.

Used where the ledger must tell a dead execution from a live one without waiting for
its heartbeat to go stale: a start that finds the job running elsewhere
(:func:`worker_alive`), and the lifeline looking for reservations of dead workers
(:func:`held_by_live_workers`). Both use Celery's own remote control (``ping``,
``query_task``), answered by each worker's main process, which stays responsive while
its pool processes run jobs. A worker that does not answer within
``JOBLEDGER_WORKER_REPLY_TIMEOUT`` seconds counts as gone; the cost of a wrong verdict
is bounded (see docs/security.md, "Nothing lost, nothing stuck, nothing doubled").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from celery import Celery

from app.config import settings


def _app() -> Celery:
    from app.celery import app  # late: app.celery imports the task base, which uses this

    return app


def worker_alive(name: str) -> bool:
    """Whether the worker node ``name`` (``celery@host``) answers a ping."""
    replies = _app().control.ping(destination=[name], timeout=settings().worker_reply_timeout)
    return any(name in reply for reply in replies or [])


@dataclass(frozen=True)
class Holdings:
    """The workers that answered, and the task ids they hold (reserved, scheduled for an
    ETA, or running)."""

    workers: frozenset[str]
    task_ids: frozenset[str]


def held_by_live_workers(task_ids: Iterable[str]) -> Holdings:
    """Ask every worker which of ``task_ids`` it holds (one ``query_task`` broadcast)."""
    ids = sorted(set(task_ids))
    replies = _app().control.broadcast(
        "query_task",
        arguments={"ids": ids},
        reply=True,
        timeout=settings().worker_reply_timeout,
    )
    workers: set[str] = set()
    held: set[str] = set()
    for reply in replies or []:
        for worker, found in reply.items():
            workers.add(worker)
            held.update(found or {})
    return Holdings(frozenset(workers), frozenset(held))
