"""Publishing the messages of jobs the ledger has already recorded ``queued``.

Usage::

    from app.ledger.runtime.publishing import Outgoing, publish_recorded

    results = publish_recorded(app, [Outgoing(task=..., job_id=..., kwargs=..., ...)],
                               actor=actor)

The caller has committed every job's row and its ``queued`` event; this only sends the
messages, of any mix of task types (:meth:`JobTask.apply_many`, ``POST /jobs/batch``).
A broker that refuses a message fails that job and every one after it, saying why
(:func:`record_unpublished`), and the error is raised: no job stays ``queued`` waiting
for a message that was never sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from celery.result import AsyncResult
from kombu.messaging import Producer

from app.ledger import idempotency
from app.ledger import transitions as ledger


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

    Raises:
        Exception: the broker's error for the first message it refused, after that job
            and every later one are recorded ``failed`` (:func:`record_unpublished`).
    """
    results: list[AsyncResult] = []
    with app.producer_or_acquire(producer) as connected:
        for position, message in enumerate(messages):
            try:
                results.append(
                    Task.apply_async(
                        app.tasks[message.task],
                        (),
                        message.kwargs,
                        task_id=message.message_id,
                        producer=connected,
                        headers=message.headers,
                        **message.options,
                    )
                )
            except Exception as error:
                record_unpublished([m.job_id for m in messages[position:]], error, actor)
                raise
    return results


def record_unpublished(job_ids: Iterable[uuid.UUID], error: Exception, actor: ledger.Actor) -> None:
    """The broker refused the messages of recorded jobs: they fail, saying why, rather
    than wait ``queued`` for a message that will never come, and give back their
    idempotency keys (the caller was told it failed; its retry must create the job)."""
    job_ids = list(job_ids)
    for job_id in job_ids:
        ledger.record_failed(
            job_id, reason=f"could not publish the job to the broker: {error}", actor=actor
        )
    idempotency.release(job_ids)
