"""Jobs of one or several types created together, all or nothing: the core of
:meth:`JobTask.apply_many <app.ledger.runtime.task.JobTask.apply_many>` and of
``POST /jobs/batch``.

Usage::

    from app.ledger.runtime.batch import item_of, new_jobs, record_batch

    items = [item_of(echo, {"value": 1}, tenant="acme"),
             item_of(export_data, {"dataset": "sales"}, tenant="acme", priority=7)]
    batch = record_batch(items, new_jobs(items), idempotency_key="K")
    results = batch.replayed or publish_recorded(app, batch.messages, actor=batch.actor)

:func:`item_of` checks one job's options (queue, priority, time limits, retry policy,
the texts of its job options), naming the option. :func:`new_jobs` validates every
item's payload by its own job type, writing nothing; one
:class:`~app.exceptions.InvalidPayload` names every refused field by the item's index
(``[3].value``). :func:`record_batch` then records every job ``queued`` in one
transaction (:func:`~app.ledger.transitions.record_queued_many`): all of them or none. Publishing is
:func:`~app.ledger.runtime.publishing.publish_recorded`'s (a broker refusing fails every
unsent job, saying why).

With an idempotency key ``K``, job ``i`` is keyed ``K#i`` and every job carries the
digest of the whole batch (each job's type, payload and subject, in order): the same
batch again returns its jobs (``replayed``) and another batch under ``K`` (other jobs,
or another number of them) is refused with :class:`~app.exceptions.IdempotencyConflict`.
Of concurrent batches with one key the database lets one insert its rows; the others
find its jobs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery.result import AsyncResult

from app.exceptions import InvalidPayload
from app.inputs import unstorable_fields
from app.ledger import idempotency
from app.ledger import transitions as ledger
from app.ledger.rules.actors import actor_for
from app.ledger.runtime.celery_redaction import payload_reprs
from app.ledger.runtime.publishing import Outgoing
from app.ledger.runtime.target import JobTarget
from app.ledger.runtime.task import (
    JOB_OPTIONS,
    RETRY_POLICY_HEADER,
    TEXT_OPTIONS,
    JobTask,
    tenant_of,
)


@dataclass(slots=True)  # not frozen: apply_many makes one per job, and frozen costs 4x
class Item:
    """One job of a batch: its options checked (:func:`item_of`), its payload not yet."""

    task: JobTask
    #: The payload, by field (validated by :func:`record_batch`).
    kwargs: dict[str, Any]
    #: The job options (``tenant``, ``subject``, ``created_by``, ``trigger``, ``metadata``).
    described: dict[str, Any]
    #: Celery's message options, checked: ``queue``, the broker's ``priority``, time limits…
    options: dict[str, Any]
    #: The ledger's priority, 0 to 9.
    priority: int
    #: Headers of its own beside the ledger's (a retry policy of its own).
    headers: dict[str, Any]

    def with_payload(self, kwargs: dict[str, Any]) -> Item:
        """Another job with the same options (the jobs of ``apply_many`` share theirs)."""
        return Item(self.task, kwargs, self.described, self.options, self.priority, self.headers)


@dataclass(frozen=True)
class Recorded:
    """A batch the ledger holds: the jobs recorded now, or those of an earlier request."""

    #: Every job of the batch, in the items' order.
    job_ids: list[uuid.UUID]
    #: The messages of the jobs recorded now, in order: to publish.
    messages: list[Outgoing]
    #: The jobs an earlier batch with the same key made (``replayed`` set on each); None
    #: when this batch made its jobs.
    replayed: list[AsyncResult] | None
    #: Who recorded them (``api``, ``producer``…): publishing fails unsent jobs as it.
    actor: ledger.Actor


def item_of(task: JobTask, kwargs: dict[str, Any] | None = None, **options: Any) -> Item:
    """One job of ``task`` with ``apply_async``'s options (job options and Celery's).

    Raises:
        InvalidPayload: an option is refused (``queue``, ``priority``, ``time_limit``,
            ``retry_policy.<field>``, a text option PostgreSQL cannot store), named.
    """
    described = {key: options.pop(key) for key in JOB_OPTIONS if key in options}
    refused = dict(unstorable_fields({n: described[n] for n in TEXT_OPTIONS if n in described}))
    if refused:  # PostgreSQL would refuse them at the insert, as a 500
        raise InvalidPayload(task.name, refused)
    task.check_time_limits(options)
    task.route(options)
    priority = task.prioritize(options)
    policy = options.pop("retry_policy", None)
    headers = {} if policy is None else {RETRY_POLICY_HEADER: task.checked_retry_policy(policy)}
    return Item(task, dict(kwargs or {}), described, options, priority, headers)


def new_jobs(items: Sequence[Item], indexes: Sequence[int] | None = None) -> list[ledger.NewJob]:
    """The job each item makes, its payload validated by its own job type (nothing is
    written).

    Raises:
        InvalidPayload: naming every refused field of every item as ``[index].field``,
            ``index`` the item's position, or its entry in ``indexes`` when given (a
            caller that refused some items itself names the others as its request does).
    """
    jobs: list[ledger.NewJob] = []
    problems: dict[str, str] = {}
    refused_types: list[str] = []
    for position, item in enumerate(items):
        task, described = item.task, item.described
        try:
            payload = task.validate_payload(
                (), item.kwargs, tenant=tenant_of(described, item.kwargs)
            )
            document = task.job_document(payload, described)
        except InvalidPayload as error:
            index = position if indexes is None else indexes[position]
            problems.update({f"[{index}].{field}": p for field, p in error.fields.items()})
            refused_types.append(task.name)
            continue
        job_id = uuid.uuid4()
        jobs.append(
            task._new_job(job_id, str(job_id), document, described, item.options, item.priority)
        )
    if problems:
        raise InvalidPayload(", ".join(dict.fromkeys(refused_types)), problems)
    return jobs


def record_batch(
    items: Sequence[Item], jobs: Sequence[ledger.NewJob], *, idempotency_key: str | None = None
) -> Recorded:
    """Record the items' jobs (:func:`new_jobs`) ``queued`` in one transaction, or find
    the jobs an earlier batch with ``idempotency_key`` made.

    Raises:
        IdempotencyConflict: the key was used for another request; nothing written.
        InvalidIdempotencyKey: the key is malformed; nothing written.
        ValueError: the items were made by different triggers (one actor records a batch).
    """
    actors = {actor_for(item.described.get("trigger", "producer")) for item in items}
    if len(actors) > 1:
        raise ValueError(f"a batch is recorded by one actor; these items have {sorted(actors)}")
    actor = actors.pop() if actors else "producer"
    jobs = list(jobs)
    if idempotency_key is not None and jobs:
        jobs = _with_batch_key(jobs, idempotency.checked_key(idempotency_key))
        replayed = items[0].task._replayed(jobs)
        if replayed is not None:
            return Recorded([uuid.UUID(r.id) for r in replayed], [], replayed, actor)
    created = ledger.record_queued_many(jobs, actor=actor)
    if idempotency_key is not None and jobs and not created:
        replayed = items[0].task._replayed(jobs)  # a concurrent batch with the key won
        if replayed is not None:
            return Recorded([uuid.UUID(r.id) for r in replayed], [], replayed, actor)
    reprs = _Reprs()
    messages = [
        Outgoing(
            task=item.task.name,
            job_id=job.id,
            kwargs=job.payload,
            headers={**JobTarget(job.id).header(), **item.headers},
            options={**item.options, **reprs(item, job.payload)},
        )
        for item, job in zip(items, jobs, strict=True)
        if job.id in created
    ]
    return Recorded([job.id for job in jobs], messages, None, actor)


class _Reprs:
    """:func:`~app.ledger.runtime.celery_redaction.payload_reprs` once per distinct payload
    of a batch (its jobs often share one), each made by Celery's ``saferepr`` (tens of
    microseconds a job). A job's payload is a JSON document (``model_dump(mode="json")``),
    so its ``repr`` names it exactly, types included (``1``, ``1.0`` and ``True``
    differ): that is the key, with the caller's own reprs."""

    def __init__(self) -> None:
        self.known: dict[tuple[int, str, str, str], dict[str, str]] = {}

    def __call__(self, item: Item, payload: dict[str, Any]) -> dict[str, str]:
        options = item.options
        key = (
            id(item.task.app),
            repr(options.get("argsrepr")),
            repr(options.get("kwargsrepr")),
            repr(payload),
        )
        found = self.known.get(key)
        if found is None:
            found = self.known[key] = payload_reprs(item.task.app, (), payload, options)
        return found


def _with_batch_key(jobs: list[ledger.NewJob], key: str) -> list[ledger.NewJob]:
    """Job ``i`` keyed ``key#i``, each with the digest of the whole batch."""
    batch = [{"type": job.type, "payload": job.payload, "subject": job.subject} for job in jobs]
    digest = idempotency.request_digest("batch", {"batch": batch}, None)
    return [
        dataclasses.replace(job, idempotency_key=f"{key}#{index}", request_digest=digest)
        for index, job in enumerate(jobs)
    ]
