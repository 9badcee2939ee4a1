"""Example job types of the run-controls tests (queues, priorities, time limits, retry
policies). Not product features: each makes one control visible in the ledger.

Importing this module (the test modules that use it do, at collection) adds it to
``JOBLEDGER_EXTRA_TASK_MODULES`` so that every worker started afterwards registers these
types, as :mod:`tests.support.chains` does for its own.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from app.exceptions import JobFailed
from app.ledger.rules.retries import RetryPolicy
from app.ledger.runtime.chain import Step, chain_job
from app.ledger.runtime.context import JobContext, SoftTimeLimit
from app.ledger.runtime.task import JobPayload, job_task
from tests.support.processes import register_in_subprocesses

MODULE = "tests.support.controls"


register_in_subprocesses(MODULE)


class ValuePayload(JobPayload):
    value: int


@job_task("example.exported", ValuePayload, queue="export")
def exported(job: JobContext, payload: ValuePayload) -> dict[str, Any]:
    """A job of the ``export`` family that does nothing but answer its value."""
    return {"value": payload.value}


class RoutedPairPayload(JobPayload):
    value: int


@chain_job(
    "example.routed_pair",
    RoutedPairPayload,
    steps=[
        Step("example.echo", lambda p: {"value": p.value}),
        Step("example.exported", lambda p: {"value": p.value}),
    ],
)
def routed_pair() -> None:
    """Two steps of two queues: ``example.echo`` (``celery``), ``example.exported``
    (``export``)."""


class ChurnPayload(JobPayload):
    #: How the body ends at its soft time limit: ``partial`` (keeps what it did, the
    #: rest as an item error) or ``fail`` (its own reason).
    on_limit: Literal["partial", "fail"] = "partial"


@job_task("example.checkpointing", ChurnPayload)
def checkpointing(job: JobContext, payload: ChurnPayload) -> dict[str, Any]:
    """Chain SHA-256 digests until the soft time limit stops it (more work than fits in
    any limit), checkpointing as it goes; then end the way ``on_limit`` says."""
    done, digest = 0, b""
    try:
        while True:
            digest = hashlib.sha256(digest).digest()
            done += 1
            job.tick()
    except SoftTimeLimit:
        limit = f"the soft time limit ({job.soft_time_limit:g} s)"
        if payload.on_limit == "fail":
            raise JobFailed(f"stopped by {limit} after {done} digests; nothing kept") from None
        job.add_error(f"not computed: {limit} came first", after=done)
        return {"digests": done, "last": digest.hex()}


class Unreachable(ConnectionError):
    """A source that did not answer: the kind of failure worth another attempt."""


class WobblyPayload(JobPayload):
    #: Attempts that fail before one succeeds.
    failures: int
    #: What the failing attempts raise: ``connection`` is retried, ``value`` is not.
    error: Literal["connection", "value"] = "connection"


#: Three attempts, 0.4 s then 0.8 s apart (equal jitter: from half of that up).
WOBBLY_POLICY = RetryPolicy(
    retry_on=("ConnectionError",), max_attempts=3, backoff=0.4, backoff_max=5
)


@job_task("example.wobbly", WobblyPayload, retry_policy=WOBBLY_POLICY)
def wobbly(job: JobContext, payload: WobblyPayload) -> dict[str, int]:
    """Fail the first ``failures`` attempts, then succeed."""
    if job.attempt <= payload.failures:
        if payload.error == "value":
            raise ValueError(f"bad input on attempt {job.attempt}")
        raise Unreachable(f"source unreachable on attempt {job.attempt}")
    return {"attempts": job.attempt}
