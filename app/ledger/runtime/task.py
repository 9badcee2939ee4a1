"""The base class of job tasks, and the ``job_task`` decorator that makes one.

Usage::

    class ImportPayload(JobPayload):
        source: str
        dataset: str

    @job_task("import", ImportPayload, subject="dataset")
    def import_data(job: JobContext, payload: ImportPayload) -> dict[str, int]: ...

    import_data.delay(source="a.csv", dataset="sales")   # validated, recorded, published

Where each transition is written, and why:

- ``queued`` in :meth:`JobTask.apply_async`, before the message is published. Not in
  ``before_task_publish``: an exception in a signal handler is only logged, so a ledger
  outage would publish a job the ledger never heard of. Here it fails ``delay()`` instead.
  A bad payload raises :class:`~app.exceptions.InvalidPayload` before anything is written.
- ``running`` from the ``task_prerun`` handler (:mod:`app.ledger.runtime.signals`), on
  the message's target (a job or a chain step, resolved once from its header:
  :mod:`app.ledger.runtime.target`). For a plain job that may start, the handler only
  reads and the start is written lazily (:mod:`app.ledger.runtime.lazy_start`: after
  ``JOBLEDGER_LAZY_START_SECONDS``, at the body's first write, or with the outcome in
  one statement); otherwise it is written (or refused) at once. The execution and its
  verdict are kept on the request (:mod:`app.ledger.runtime.execution`);
  :meth:`JobTask.__call__` skips the body when the verdict says so (a durable cancel, a
  finished job, a stale message).
- ``retrying`` in :meth:`JobTask.retry`, before Celery publishes the retry's message (so
  that message never meets its job still ``running``).
- ``succeeded``/``partial``/``failed``/``canceled`` in :meth:`JobTask.__call__`, before it
  returns. With ``task_acks_late`` the message is acknowledged only after that, so the
  outcome is durable before the ack; if the ledger stays unreachable the message is
  rejected back to the queue (:class:`celery.exceptions.Reject`), never acked unrecorded.
  ``task_success``/``task_failure`` handlers could not give that guarantee (their
  exceptions are swallowed and the ack goes out anyway).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from celery import Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.result import AsyncResult
from pydantic import BaseModel, ConfigDict, ValidationError

from app import queues
from app.config import QUEUE_NAME, settings
from app.exceptions import (
    IdempotencyConflict,
    InvalidPayload,
    JobCanceled,
    JobFailed,
    LedgerUnavailable,
)
from app.inputs import unstorable_fields
from app.ledger import idempotency
from app.ledger import transitions as ledger
from app.ledger.rules.actors import Trigger, actor_for
from app.ledger.rules.retries import RetryPolicy, next_delay, retries
from app.ledger.runtime import lazy_start
from app.ledger.runtime.celery_redaction import payload_reprs
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.execution import (
    Execution,
    context_of,
    execution_of,
    keep,
    new_execution_id,
)
from app.ledger.runtime.liveness import worker_alive
from app.ledger.runtime.publishing import Outgoing, publish_recorded
from app.ledger.runtime.single_publish import OnePublish, publish_one
from app.ledger.runtime.target import HEADER as HEADER  # where producers look for it
from app.ledger.runtime.target import JobTarget, target_of, uuid_of_task_id
from app.ledger.runtime.time_limit_types import check_time_limit_types

log = logging.getLogger(__name__)

#: Seconds before a copy of a message whose job runs elsewhere is delivered again.
DUPLICATE_DELAY = 10
#: Options of ``apply_async`` that describe the job rather than the message.
JOB_OPTIONS = ("tenant", "subject", "created_by", "trigger", "metadata")
#: The message header carrying one job's own retry policy (``apply_async(retry_policy=…)``);
#: Celery copies a message's headers to its retries, so every attempt reads it.
RETRY_POLICY_HEADER = "jobledger_retry_policy"
#: Options linking a job to the definition it is made from (app.ledger.definitions).
DEFINITION_OPTIONS = ("definition_id", "definition_version", "scheduled_for")
#: Job options stored as text or JSON, checked for NUL characters like the payload.
TEXT_OPTIONS = ("subject", "created_by", "metadata")
#: What a tenant looks like (as API keys and payload ``tenant`` fields have it): tenants
#: name export folders, so no ``/`` and no leading dot.
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

P = TypeVar("P", bound=BaseModel)


class JobPayload(BaseModel):
    """Base of payload models: unknown fields are refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class JobTask(Task):  # type: ignore[misc]
    """A Celery task whose every run is recorded in the ledger."""

    #: The worker-side request records a pool process lost mid-job (main process), and
    #: redacts what its task events show (Flower): app.ledger.runtime.celery_redaction.
    Request = "app.ledger.runtime.request:JobRequest"
    payload_model: ClassVar[type[BaseModel]] = JobPayload
    #: Payload field whose value is the job's subject (budget, dataset…), if any.
    subject_field: ClassVar[str | None] = None
    #: Safe to run again from the start when its worker is lost (idempotent body): the
    #: lifeline then re-queues an orphaned run instead of failing it.
    retry_when_orphaned: ClassVar[bool] = False
    #: Start lazily (:mod:`app.ledger.runtime.lazy_start`): ``running`` written after
    #: ``JOBLEDGER_LAZY_START_SECONDS`` or at the body's first write, a quick job's start
    #: and outcome in one statement. False (``job_task(…, lazy_start=False)``): always
    #: written before the body, for a type whose body must show ``running`` from its
    #: first moment.
    lazy_start: ClassVar[bool] = True
    #: Which failures retry, how often, how long apart (:mod:`app.ledger.rules.retries`).
    retry_policy: ClassVar[RetryPolicy | None] = None
    #: The trigger beat records on a run of this type it makes from a schedule firing
    #: (:func:`app.ledger.definitions.run`): ``beat``, or ``schedule`` for a type that is
    #: the scheduled form of another.
    schedule_trigger: ClassVar[Trigger] = "beat"
    typing = False  # the payload model validates, not the run() signature

    # -- producer side --------------------------------------------------------------

    def validate_payload(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, tenant: str | None = None
    ) -> BaseModel:
        """The payload model from ``delay()``'s arguments (positional ones in field order).

        ``tenant``, the tenant the job will act for, is the validation context
        (``info.context["tenant"]``): a payload may name things only some tenants may
        use (a database source).

        Raises:
            InvalidPayload: naming every offending field.
        """
        fields = list(self.payload_model.model_fields)
        if len(args) > len(fields):
            raise InvalidPayload(
                self.name,
                {
                    "*": f"takes at most {len(fields)} positional "
                    f"arguments ({', '.join(fields)}), got {len(args)}"
                },
            )
        data = dict(zip(fields, args, strict=False))
        clash = sorted(set(data) & set(kwargs))
        if clash:
            raise InvalidPayload(
                self.name, {n: "given both by position and by name" for n in clash}
            )
        data.update(kwargs)
        # PostgreSQL's text and jsonb cannot hold NUL, an unpaired surrogate, NaN:
        # refuse them here, naming the field, rather than fail at the insert
        refused = dict(unstorable_fields(data))
        if refused:
            raise InvalidPayload(self.name, refused)
        try:
            return self.payload_model.model_validate(
                data, context=None if tenant is None else {"tenant": tenant}
            )
        except ValidationError as error:
            raise InvalidPayload(self.name, _field_problems(error)) from None

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Validate the payload, record the job ``queued``, then publish its message.

        Extra options describe the job: ``tenant``, ``subject``, ``created_by``,
        ``trigger`` (producer | beat | api | retry | manual), ``metadata``; and the
        link to a definition (``definition_id``, ``definition_version``,
        ``scheduled_for``), with which a firing that has its job already returns None
        and publishes nothing (:mod:`app.ledger.definitions`). A message that already
        belongs to a recorded job (a Celery retry, a chain step) is published as is.
        Either way its ``argsrepr``/``kwargsrepr`` (what Flower and the logs show) are
        redacted.

        ``idempotency_key`` makes the call safe to repeat: a second call with the same key
        (in the same tenant) and the same request returns the job of the first, with
        ``result.replayed`` set, and publishes nothing; with another request it raises
        :class:`~app.exceptions.IdempotencyConflict` (:mod:`app.ledger.idempotency`).
        """
        check_time_limit_types(self.app)  # once per process: a misspelt type is refused
        headers = dict(options.pop("headers", None) or {})
        described = {key: options.pop(key) for key in JOB_OPTIONS if key in options}
        link = {key: options.pop(key) for key in DEFINITION_OPTIONS if key in options}
        key = options.pop("idempotency_key", None)
        if HEADER in headers:
            options.update(payload_reprs(self.app, args or (), kwargs or {}, options))
            return super().apply_async(args, kwargs, task_id=task_id, headers=headers, **options)
        self.check_time_limits(options)
        self.route(options)
        priority = self.prioritize(options)
        if options.get("retry_policy") is not None:
            headers[RETRY_POLICY_HEADER] = self.checked_retry_policy(options["retry_policy"])
        options.pop("retry_policy", None)
        payload = self.validate_payload(
            tuple(args or ()), dict(kwargs or {}), tenant=tenant_of(described, kwargs)
        )
        document = self.job_document(payload, described)
        job_id = uuid.uuid4() if task_id is None else uuid_of_task_id(task_id)
        task_id = task_id or str(job_id)
        actor = actor_for(described.get("trigger", "producer"))
        job = self._new_job(job_id, task_id, document, described, options, priority)
        if link:  # made from a definition (most jobs are not: no copy for them)
            job = dataclasses.replace(job, **link)
        if key is not None:
            job = self._with_key(job, idempotency.checked_key(key))
            replayed = self._replayed([job])
            if replayed is not None:
                return replayed[0]
        headers.update(JobTarget(job_id).header())
        options.update(payload_reprs(self.app, (), document, options))
        message = Outgoing(self.name, job_id, document, headers, options, task_id)
        if not link and key is None:  # most jobs: the message built while the row commits
            with OnePublish(self.app, message, actor=actor) as publish:
                ledger.record_queued_meanwhile(job, actor=actor, meanwhile=publish.build)
                return publish.send()  # an id recorded before is published again
        if not ledger.record_queued(job, actor=actor):
            if link.get("scheduled_for") is not None:
                return None  # this firing of the definition has its job: publish nothing
            if key is not None:
                replayed = self._replayed([job])  # a concurrent request with the key won
                if replayed is not None:
                    return replayed[0]
        return publish_one(self.app, message, actor=actor)

    def apply_many(self, payloads: Iterable[dict[str, Any]], **options: Any) -> list[AsyncResult]:
        """The bulk enqueue path: validate every payload (keyword arguments of one job
        each), record them all in one transaction, then publish them over one producer
        (:mod:`app.ledger.runtime.batch`, which ``POST /jobs/batch`` uses for batches of
        several types).

        Nothing is written or queued when any payload is invalid: the error names the
        payload's index and field (``[3].value``). Accepts the job options of
        :meth:`apply_async` (``tenant``, ``trigger``…), applied to every job, and
        Celery's ``producer`` (default: one from the app's pool). With
        ``idempotency_key=K`` the batch is made once: job ``i`` gets the key ``K#i`` and
        the digest of the whole batch, so sending the same batch again returns its jobs
        and another batch under ``K`` is refused (:mod:`app.ledger.idempotency`).
        """
        # late: the batch module builds on this one (JobTask, tenant_of)
        from app.ledger.runtime.batch import item_of, new_jobs, record_batch

        producer = options.pop("producer", None)
        key = options.pop("idempotency_key", None)
        one = item_of(self, **options)  # the options are every job's: checked once
        items = [one.with_payload(dict(kwargs)) for kwargs in payloads]
        batch = record_batch(items, new_jobs(items), idempotency_key=key)
        if batch.replayed is not None:
            return batch.replayed
        return publish_recorded(self.app, batch.messages, producer=producer, actor=batch.actor)

    def job_document(self, payload: BaseModel, described: dict[str, Any]) -> dict[str, Any]:
        """The payload as the message and the ledger carry it (JSON).

        A payload with a ``tenant`` field (import, export) names the tenant whose data
        the job reads and writes, and the job row's tenant is the one the worker acts
        for: they must be one. So the field, when left out, is filled in with the job's
        tenant (``apply_async(tenant=…)``, else ``default``), and a field naming another
        tenant than ``apply_async(tenant=…)`` is refused before anything is written.

        Raises:
            InvalidPayload: ``apply_async(tenant=…)`` is not a tenant name, or field
                ``tenant`` names another tenant than the job's.
        """
        document = payload.model_dump(mode="json")
        option = described.get("tenant")
        if option is not None and not (isinstance(option, str) and TENANT_NAME.match(option)):
            raise InvalidPayload(
                self.name,
                {"tenant": f"apply_async(tenant={option!r}) must match {TENANT_NAME.pattern}"},
            )
        if "tenant" not in type(payload).model_fields:
            return document
        named = document["tenant"] if "tenant" in payload.model_fields_set else None
        if named is not None and option is not None and named != option:
            raise InvalidPayload(
                self.name,
                {
                    "tenant": f"names tenant {named!r} but the job is created for tenant "
                    f"{option!r} (apply_async(tenant=…)); give one tenant, or the same in both"
                },
            )
        document["tenant"] = option or named or "default"
        return document

    def _with_key(self, job: ledger.NewJob, key: str) -> ledger.NewJob:
        digest = idempotency.request_digest(self.name, job.payload, job.subject)
        return dataclasses.replace(job, idempotency_key=key, request_digest=digest)

    def _replayed(self, jobs: list[ledger.NewJob]) -> list[AsyncResult] | None:
        """The results of the jobs made earlier with these jobs' keys (``replayed`` set),
        None when there are none.

        Raises:
            IdempotencyConflict: a key was used for another request.
        """
        keys = [str(job.idempotency_key) for job in jobs]
        known = idempotency.find(jobs[0].tenant, keys)
        if not known:
            return None
        results = []
        for job, key in zip(jobs, keys, strict=True):
            if key not in known:  # a batch under this key, but of another size
                raise IdempotencyConflict(key)
            result = self.AsyncResult(
                str(idempotency.same_request(known[key], str(job.request_digest), key))
            )
            result.replayed = True
            results.append(result)
        return results

    def _new_job(
        self,
        job_id: uuid.UUID,
        task_id: str,
        document: dict[str, Any],
        described: dict[str, Any],
        options: dict[str, Any],
        priority: int | None = None,
    ) -> ledger.NewJob:
        texts = {name: described[name] for name in TEXT_OPTIONS if name in described}
        refused = dict(unstorable_fields(texts))
        if refused:  # PostgreSQL would refuse them at the insert, as a 500
            raise InvalidPayload(self.name, refused)
        subject = described.get("subject")
        if subject is None and self.subject_field is not None:
            subject = document.get(self.subject_field)
        return ledger.NewJob(
            id=job_id,
            type=self.name,
            payload=document,
            tenant=tenant_of(described, document),
            subject=None if subject is None else str(subject),
            trigger=described.get("trigger", "producer"),
            created_by=described.get("created_by"),
            celery_task_id=task_id,
            queue=options.get("queue"),
            priority=priority,
            metadata=dict(described.get("metadata") or {}),
        )

    # -- worker side ----------------------------------------------------------------

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry, with ``retrying`` recorded *before* it publishes the message.

        Recorded after (the ``task_retry`` signal), the new message can reach another
        pool process while the job still looks ``running`` under this live execution,
        and the start would defer it as a second copy. If the message cannot be
        published, the job fails saying so instead of waiting ``retrying`` for it.
        """
        execution = execution_of(self.request)
        context = None if execution is None else execution.context
        limit = self.max_retries if max_retries is None else max_retries
        if context is not None and (limit is None or self.request.retries + 1 <= limit):
            when = eta or (self.default_retry_delay if countdown is None else countdown)
            next_at = _moment(when)
            reason = retry_reason(exc, context.attempt, next_at)
            _durably(context.retrying, reason, next_attempt_at=next_at)
        try:
            return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
        except Reject as refused:
            if context is not None:
                _durably(context.fail, f"could not publish the retry: {refused.reason}", [])
            raise

    def policy(self) -> RetryPolicy | None:
        """The retry policy of the job running now: its own (``apply_async(retry_policy=…)``,
        a definition's run option), else the type's from ``JOBLEDGER_RETRY_POLICIES``,
        else the one given to ``job_task(retry_policy=…)``, else None (a failure fails
        the job)."""
        own = (getattr(self.request, "headers", None) or {}).get(RETRY_POLICY_HEADER)
        if own is None:
            own = getattr(self.request, RETRY_POLICY_HEADER, None)
        if isinstance(own, dict):
            try:
                return RetryPolicy.model_validate(own)
            except ValidationError:  # checked at apply_async: only a forged message
                log.warning("job %s: ignored a malformed retry policy header", self.request.id)
        return settings().retry_policies.get(self.name) or self.retry_policy

    def checked_retry_policy(self, given: Any) -> dict[str, Any]:
        """One job's retry policy (a :class:`RetryPolicy` or its fields as a dict) as the
        message header carries it.

        Raises:
            InvalidPayload: naming the field (``retry_policy.max_attempts``…).
        """
        if isinstance(given, RetryPolicy):
            return given.model_dump(mode="json")
        try:
            return RetryPolicy.model_validate(given).model_dump(mode="json")
        except ValidationError as error:
            problems = _field_problems(error)
            raise InvalidPayload(
                self.name, {f"retry_policy.{field}": p for field, p in problems.items()}
            ) from None

    def start_execution(self) -> Execution:
        """Start this delivery as a new execution of the message's target, and keep it
        on the request (called by the ``task_prerun`` handler).

        A plain job whose read allows it starts lazily (:mod:`app.ledger.runtime.
        lazy_start`: its ``running`` is written after ``JOBLEDGER_LAZY_START_SECONDS``,
        at its first write, or with its outcome); anything else, a chain step, a type
        with ``lazy_start = False`` and a job whose hard time limit is not above the
        delay start the eager way: ``running`` (or why not) is recorded now."""
        request = self.request
        target, execution_id = target_of(request), new_execution_id()
        worker = request.hostname or "unknown"
        queue = (request.delivery_info or {}).get("routing_key")
        delay = settings().lazy_start_seconds
        hard = self.limits_of(request)[1]
        if (
            self.lazy_start
            and type(target) is JobTarget
            and delay > 0
            and (hard is None or hard > delay)
        ):
            lazy = lazy_start.begin(
                target,
                ledger.Execution(
                    celery_task_id=request.id,
                    execution_id=execution_id,
                    worker=worker,
                    worker_pid=os.getpid(),
                    queue=queue,
                ),
                delay,
            )
            if lazy is not None:
                lazy_target, attempt = lazy
                start = ledger.Start(run=True, attempt=attempt)
                return keep(request, Execution(lazy_target, execution_id, start))

        def alive(holder: str) -> bool:
            # this worker's main process is alive: it would have recorded a lost child
            return holder == worker or worker_alive(holder)

        def unknown() -> ledger.NewJob:
            return ledger.NewJob(
                id=target.job_id,
                type=self.name,
                payload=dict(request.kwargs or {}),
                celery_task_id=request.id,
                queue=queue,
            )

        start = target.start(
            celery_task_id=request.id,
            execution_id=execution_id,
            worker=worker,
            worker_pid=os.getpid(),
            is_alive=alive,
            unknown_job=unknown,
            queue=queue,
        )
        return keep(request, Execution(target, execution_id, start))

    def route(self, options: dict[str, Any]) -> None:
        """Name the job's queue in ``options`` (the ledger records it at ``queued``):
        ``apply_async(queue=…)``, else the type's (:func:`app.queues.queue_for`).

        Raises:
            InvalidPayload: ``queue`` is not a queue name (nothing is written or queued).
        """
        queue = options.get("queue") or queues.queue_for(self.name)
        if not (isinstance(queue, str) and QUEUE_NAME.match(queue)):
            raise InvalidPayload(
                self.name, {"queue": f"{queue!r} is not a queue name ({QUEUE_NAME.pattern})"}
            )
        options["queue"] = queue

    def prioritize(self, options: dict[str, Any]) -> int:
        """The job's priority, 0 (least urgent) to 9 (most urgent): ``apply_async(
        priority=…)``, else the type's (:func:`app.queues.priority_for`). ``options`` gets
        the broker's value for it (:func:`app.queues.broker_priority`); the ledger
        records the one returned.

        Raises:
            InvalidPayload: ``priority`` is not a whole number from 0 to 9.
        """
        priority = options.get("priority")
        if priority is None:
            priority = queues.priority_for(self.name)
        elif (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not (queues.MIN_PRIORITY <= priority <= queues.MAX_PRIORITY)
        ):
            raise InvalidPayload(
                self.name,
                {
                    "priority": "must be a whole number from 0 (least urgent) to 9 (most "
                    f"urgent), got {priority!r}"
                },
            )
        options["priority"] = queues.broker_priority(priority)
        return int(priority)

    def check_time_limits(self, options: dict[str, Any]) -> None:
        """Check (and complete) one job's ``time_limit``/``soft_time_limit`` options.

        Celery's prefork pool arms the hard limit only once the soft one has passed, so a
        soft limit at or above the hard one would let the job run past its hard limit:
        a per-job ``time_limit`` below the type's soft limit therefore brings a soft limit
        of 90 % of it, and a soft limit that is still not below the hard one is refused.

        Raises:
            InvalidPayload: naming the option (nothing is written or queued).
        """
        hard, soft = options.get("time_limit"), options.get("soft_time_limit")
        if hard is None and soft is None:
            return
        for name, value in (("time_limit", hard), ("soft_time_limit", soft)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise InvalidPayload(
                    self.name, {name: f"must be a number of seconds > 0, got {value!r}"}
                )
        if soft is None and hard is not None and self.soft_time_limit >= hard:
            options["soft_time_limit"] = soft = hard * 0.9
        soft, hard = soft or self.soft_time_limit, hard or self.time_limit
        if soft >= hard:
            raise InvalidPayload(
                self.name,
                {
                    "soft_time_limit": f"{soft:g} s must be below the time limit ({hard:g} s), "
                    "or the job could run past its hard limit"
                },
            )

    def limits_of(self, request: Any) -> tuple[float | None, float | None]:
        """``(soft, hard)`` time limits of a delivery: the message's own
        (``apply_async(soft_time_limit=…, time_limit=…)``), else the task's."""
        hard, soft = getattr(request, "timelimit", None) or (None, None)
        return soft or self.soft_time_limit, hard or self.time_limit

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            raise TypeError(
                f"{self.name}: call .delay() or .apply_async(); a job runs "
                "through the broker so that the ledger records it"
            )
        execution = execution_of(request)
        try:
            if execution is None:  # the prerun handler could not write: try again here
                execution = self.start_execution()
        except LedgerUnavailable as error:
            raise Reject(str(error), requeue=True) from error
        start = execution.start
        if not start.run:
            if start.defer:
                # A second copy while the first execution lives: keep a copy of the
                # message for later (it finishes the job if the first one dies), drop
                # this delivery. Celery's own signature_from_request, as retry() does,
                # without counting a retry.
                self.signature_from_request(countdown=DUPLICATE_DELAY).apply_async()
                log.warning(
                    "job %s not run: %s; delivered again in %s s",
                    request.id,
                    start.reason,
                    DUPLICATE_DELAY,
                )
            else:
                log.info("job %s not run: %s", request.id, start.reason)
            raise Ignore()
        execution.context = context = JobContext(
            execution.target,
            execution.execution_id,
            start.attempt,
            request.hostname,
            soft_time_limit=self.limits_of(request)[0],
        )
        try:
            return self._run_body(execution, context, args, kwargs)
        except Reject:
            lazy_start.abandon(execution.target)  # back to the queue, unrecorded
            raise
        finally:
            lazy_start.settle(execution.target)

    def _run_body(
        self,
        execution: Execution,
        context: JobContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run the body and record its outcome (see :meth:`__call__`)."""
        request, start = self.request, execution.start
        try:
            result = super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except JobCanceled as canceled:
            _durably(context.cancel, canceled.reason)
            raise Ignore() from None
        except JobFailed as failed:
            _durably(context.fail, failed.reason, failed.errors or context.errors)
            raise
        except SoftTimeLimitExceeded as error:
            reason = timed_out(self.limits_of(request)[0], "soft")
            _durably(context.fail, reason, [*context.errors, _error_entry(error, start.attempt)])
            raise
        except Exception as error:
            policy = self.policy()
            delay = None if policy is None else next_delay(policy, error, start.attempt)
            if policy is not None and delay is not None:
                # recorded `retrying` with the next attempt's time by retry(), then Retry
                raise self.retry(
                    exc=error, countdown=delay, max_retries=policy.max_attempts
                ) from error
            exhausted = policy is not None and retries(policy, error)
            reason = _user_safe(error)
            if exhausted:
                reason += f" (attempt {start.attempt}; no attempts left: retries exhausted)"
            _durably(
                context.fail,
                reason,
                [*context.errors, _error_entry(error, start.attempt)],
                retries_exhausted=exhausted,
            )
            raise
        try:
            _durably(context.finish, result)
        except Reject:
            raise
        except Exception as error:  # e.g. a result that is not JSON: fail, never stay running
            _durably(
                context.fail,
                f"the job's result could not be recorded: {error}",
                [_error_entry(error, start.attempt)],
            )
            raise
        return result


def job_task(
    name: str,
    payload: type[P],
    *,
    subject: str | None = None,
    queue: str | None = None,
    retry_policy: RetryPolicy | None = None,
    **task_options: Any,
) -> Callable[[Callable[[JobContext, P], Any]], JobTask]:
    """Make ``function(job, payload)`` a Celery job task named ``name``.

    ``queue`` is the type's default queue (its family's: ``import``, ``export``…; none
    means ``celery``); ``JOBLEDGER_QUEUES`` overrides it (:mod:`app.queues`).
    ``lazy_start=False`` writes the type's ``running`` before its body, never lazily
    (:attr:`JobTask.lazy_start`).
    ``retry_policy`` says which failures retry (:mod:`app.ledger.rules.retries`);
    ``JOBLEDGER_RETRY_POLICIES`` overrides it. ``JOBLEDGER_RATE_LIMITS`` gives the type
    Celery's ``rate_limit`` (per worker).

    Its time limits are the type's from the settings (``JOBLEDGER_TIME_LIMIT``,
    ``JOBLEDGER_SOFT_TIME_LIMIT``, ``JOBLEDGER_TIME_LIMITS``) unless ``task_options``
    give them; ``apply_async(time_limit=…, soft_time_limit=…)`` overrides them per job.
    """
    soft, hard = settings().time_limits_of(name)
    task_options.setdefault("soft_time_limit", soft)
    task_options.setdefault("time_limit", hard)
    rate = settings().rate_limits.get(name)
    if rate is not None:
        task_options["rate_limit"] = rate

    def decorate(function: Callable[[JobContext, P], Any]) -> JobTask:
        from app.celery import app  # late: app.celery imports the task modules

        if queue is not None:
            queues.declare(name, queue)

        @functools.wraps(function)
        def run(self: JobTask, **fields: Any) -> Any:
            return function(context_of(self.request), payload.model_validate(fields))

        return app.task(  # type: ignore[no-any-return]
            bind=True,
            base=JobTask,
            name=name,
            payload_model=payload,
            subject_field=subject,
            retry_policy=retry_policy,
            **task_options,
        )(run)

    return decorate


def tenant_of(described: dict[str, Any], payload: dict[str, Any] | None) -> str:
    """The tenant a job acts for: the ``tenant`` option, else the payload's own
    ``tenant`` field, else ``default``."""
    return str(described.get("tenant") or (payload or {}).get("tenant") or "default")


def _durably(write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Write an outcome; if the ledger stays unreachable, put the message back rather
    than let it be acknowledged with its outcome unrecorded."""
    try:
        write(*args, **kwargs)
    except LedgerUnavailable as error:
        raise Reject(str(error), requeue=True) from error


def retry_reason(error: BaseException | None, attempt: int, next_at: datetime) -> str:
    """The ``retrying`` event's message: what failed, the wait, when the next attempt is."""
    failed = "retry requested" if error is None else _user_safe(error)
    wait = max(0.0, (next_at - datetime.now(UTC)).total_seconds())
    return (
        f"attempt {attempt} failed: {failed}; next attempt (attempt {attempt + 1}) in "
        f"{wait:.3f} s, at {next_at.astimezone(UTC).isoformat(timespec='milliseconds')}"
    )


def _moment(when: Any) -> datetime:
    """A retry's ``eta`` (a datetime) or countdown (seconds) as the moment it is due."""
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return datetime.now(UTC) + timedelta(seconds=float(when or 0))


def timed_out(seconds: float | None, which: str) -> str:
    """The failure reason of a job stopped by its ``which`` (soft or hard) time limit."""
    after = "" if seconds is None else f" after {seconds:g} s"
    how = (
        "the job was stopped in its body"
        if which == "soft"
        else "the worker killed the process running it"
    )
    return (
        f"timed out{after} ({which} time limit: {how}; raise the limit with "
        "apply_async(time_limit=…, soft_time_limit=…) or JOBLEDGER_TIME_LIMITS)"
    )


def _field_problems(error: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for entry in error.errors():
        problems.setdefault(field_path(entry["loc"]) or "*", entry["msg"])
    return problems


def field_path(loc: Iterable[str | int]) -> str:
    """A pydantic error location as a payload field: ``rules[2].pattern`` (list items
    by index in brackets, as :meth:`JobTask.apply_many` names a payload's ``[3].value``)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def _user_safe(error: BaseException) -> str:
    text = str(error).strip() or "no message"
    return f"{type(error).__name__}: {text}"


def _error_entry(error: BaseException, attempt: int) -> dict[str, Any]:
    return {"type": type(error).__name__, "message": str(error), "attempt": attempt}
