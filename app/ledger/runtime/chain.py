"""Chained jobs: one parent job whose ordered steps are other job types, run as a
Celery chain.

Usage (``tasks/sync_and_suggest.py``)::

    @chain_job(
        "sync_and_suggest",
        SyncAndSuggestPayload,
        steps=[
            Step("sync", lambda p: {"budget_id": p.budget_id, "source": p.source}),
            Step("suggest", lambda p: {"budget_id": p.budget_id}),
        ],
        subject="budget_id",
    )
    def sync_and_suggest() -> None:
        '''Pull a budget's transactions, then suggest categories.'''

``sync_and_suggest.delay(...)`` validates the payload and every step's payload, records
the parent and its steps (all ``queued``) in one transaction, then publishes the chain
with pre-assigned task ids and a ledger header on every step; it returns an
``AsyncResult`` whose ``.id`` is the parent job id. The parent itself is never a
message: its transitions follow its steps (:mod:`app.ledger.steps`).

Steps are immutable signatures (``.si``): a step gets its payload from the parent's, not
the previous step's return value, so each step's payload is validated before anything
is queued.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from celery import chain
from celery.result import AsyncResult
from pydantic import BaseModel

from app import queues
from app.exceptions import InvalidPayload, TransitionRefused
from app.ledger import transitions as ledger
from app.ledger.rules.actors import Trigger, actor_for
from app.ledger.runtime.celery_redaction import payload_reprs
from app.ledger.runtime.target import HEADER, StepTarget, uuid_of_task_id
from app.ledger.runtime.task import DEFINITION_OPTIONS, JOB_OPTIONS, JobTask, tenant_of
from app.ledger.runtime.time_limit_types import check_time_limit_types

P = TypeVar("P", bound=BaseModel)

#: ``apply_async`` options of a chained job that every step's message takes over.
STEP_OPTIONS = (
    "queue",
    "routing_key",
    "exchange",
    "priority",
    "expires",
    "time_limit",
    "soft_time_limit",
)


@dataclass(frozen=True)
class Step:
    """One step of a chained job: the job type it runs and its payload from the parent's."""

    task: str
    payload: Callable[[Any], dict[str, Any]]


class ChainJobTask(JobTask):
    """A job type made of ordered steps; :meth:`apply_async` publishes the chain."""

    steps: ClassVar[Sequence[Step]] = ()

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult | None:
        check_time_limit_types(self.app)  # once per process, before anything is recorded
        headers = dict(options.pop("headers", None) or {})
        if HEADER in headers:
            raise TransitionRefused(
                headers[HEADER].get("job_id"),
                "failed or canceled",
                "retry",
                "single-step; submit the chained job again",
            )
        described = {key: options.pop(key) for key in JOB_OPTIONS if key in options}
        link = {key: options.pop(key) for key in DEFINITION_OPTIONS if key in options}
        if options.pop("retry_policy", None) is not None:
            self.checked_retry_policy(None)  # refused, naming the option
        tenant = tenant_of(described, kwargs)
        payload = self.validate_payload(tuple(args or ()), dict(kwargs or {}), tenant=tenant)
        document = self.job_document(payload, described)
        step_payloads = [
            self._step_payload(position, step, payload, tenant)
            for position, step in enumerate(self.steps, 1)
        ]
        job_id = uuid.uuid4() if task_id is None else uuid_of_task_id(task_id)
        planned = [
            ledger.NewStep(
                id=step_id, position=position, step_type=step.task, celery_task_id=str(step_id)
            )
            for position, (step, step_id) in enumerate(
                ((step, uuid.uuid4()) for step in self.steps), 1
            )
        ]
        # The parent is recorded with the chain's queue; each step's message is routed
        # by its own type (app.queues.route_task) unless apply_async names a queue.
        recorded = {**options, "queue": options.get("queue") or queues.queue_for(self.name)}
        # every step's message carries the chain's priority (the broker's value of it)
        priority = self.prioritize(options)
        new_job = self._new_job(job_id, str(job_id), document, described, recorded, priority)
        created = ledger.record_queued(
            ledger.NewJob(**{**new_job.__dict__, "celery_task_id": None, **link}),
            steps=planned,
            actor=actor_for(described.get("trigger", "producer")),
        )
        if not created and link.get("scheduled_for") is not None:
            return None  # this firing of the definition has its job: publish nothing
        # Only routing options reach the steps: a caller's producer (beat passes its own),
        # its headers or a countdown belong to one message, not to every step.
        step_options = {key: options[key] for key in STEP_OPTIONS if key in options}
        signatures = [
            self.app.signature(
                step.step_type,
                kwargs=step_payload,
                immutable=True,
                task_id=step.celery_task_id,
                headers=StepTarget(job_id, step.id, step.position).header(),
                **step_options,
                **payload_reprs(self.app, (), step_payload, {}),  # what Flower shows
            )
            for step, step_payload in zip(planned, step_payloads, strict=True)
        ]
        try:
            chain(*signatures).apply_async()
        except Exception as error:
            ledger.record_failed(job_id, reason=f"could not publish the chain: {error}")
            raise
        return AsyncResult(str(job_id), app=self.app)

    def checked_retry_policy(self, given: Any) -> dict[str, Any]:
        """Refused: each step retries by its own type's policy.

        Raises:
            InvalidPayload: naming ``retry_policy``.
        """
        raise InvalidPayload(
            self.name,
            {
                "retry_policy": "a chained job takes none: each step retries by its own "
                "type's policy (job_task(retry_policy=…), JOBLEDGER_RETRY_POLICIES)"
            },
        )

    def _step_payload(
        self, position: int, step: Step, payload: BaseModel, tenant: str
    ) -> dict[str, Any]:
        task = self.app.tasks[step.task]
        if not isinstance(task, JobTask):
            raise TypeError(f"step {position} of {self.name}: {step.task} is not a job task")
        try:
            document = task.validate_payload((), step.payload(payload), tenant=tenant)
        except InvalidPayload as error:
            raise InvalidPayload(
                self.name,
                {f"step {position} ({step.task}).{k}": v for k, v in error.fields.items()},
            ) from None
        return document.model_dump(mode="json")

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.name} is a chain of steps; it never runs as one message")


def chain_job(
    name: str,
    payload: type[P],
    *,
    steps: Sequence[Step],
    subject: str | None = None,
    queue: str | None = None,
    schedule_trigger: Trigger = "beat",
) -> Callable[[Callable[[], None]], ChainJobTask]:
    """Make a chained job type named ``name`` from ordered ``steps``. ``queue`` is the
    one its parent job is recorded with; its steps go to their own types' queues.
    ``schedule_trigger``: what its schedule firings are recorded as (JobTask's)."""

    def decorate(function: Callable[[], None]) -> ChainJobTask:
        from app.celery import app  # late: app.celery imports the task modules

        if queue is not None:
            queues.declare(name, queue)

        task_class = type(
            function.__name__,
            (ChainJobTask,),
            {
                "name": name,
                "payload_model": payload,
                "subject_field": subject,
                "steps": tuple(steps),
                "schedule_trigger": schedule_trigger,
                "__doc__": function.__doc__,
                "__module__": function.__module__,
            },
        )
        return app.register_task(task_class())  # type: ignore[no-any-return]

    return decorate
