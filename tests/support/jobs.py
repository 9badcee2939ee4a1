"""Tiny example job types that prove the ledger path end to end (not product features).

Loaded by test workers through ``JOBLEDGER_EXTRA_TASK_MODULES=tests.support.jobs``.
``example.gated`` blocks on a Redis list until the test releases it, so tests control
exactly when a job is mid-run, without sleeping.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from app.exceptions import JobCanceled, JobFailed
from app.ledger.runtime.chain import Step, chain_job
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class EchoPayload(JobPayload):
    value: int
    tenant: str = "default"


@job_task("example.echo", EchoPayload, subject="value")
def echo(job: JobContext, payload: EchoPayload) -> dict[str, Any]:
    """Hash the value a few times and return it: the smallest real job."""
    digest = hashlib.sha256(str(payload.value).encode()).hexdigest()
    job.log(f"echo {payload.value}")
    return {"value": payload.value, "sha256": digest}


class FailPayload(JobPayload):
    message: str


@job_task("example.fail", FailPayload)
def fail(job: JobContext, payload: FailPayload) -> None:
    """Raise an unexpected error whose text is ``message``."""
    raise RuntimeError(payload.message)


@job_task("example.refuse", FailPayload)
def refuse(job: JobContext, payload: FailPayload) -> None:
    """Fail on purpose with a user-facing reason."""
    raise JobFailed(payload.message, errors=[{"field": "message", "message": payload.message}])


class FlakyError(Exception):
    """A transient failure that Celery's autoretry handles."""


class FlakyPayload(JobPayload):
    failures: int


@job_task(
    "example.flaky",
    FlakyPayload,
    autoretry_for=(FlakyError,),
    max_retries=5,
    default_retry_delay=0,
)
def flaky(job: JobContext, payload: FlakyPayload) -> dict[str, int]:
    """Fail with :class:`FlakyError` on the first ``failures`` attempts, then succeed."""
    if job.attempt <= payload.failures:
        raise FlakyError(f"transient failure on attempt {job.attempt}")
    return {"attempts": job.attempt}


class GatedPayload(JobPayload):
    gate: str
    steps: int = 3


def gate_key(gate: str) -> str:
    return f"jobledger-test:gate:{gate}"


def gate_redis() -> redis.Redis:
    """The tests' Redis, where a test job and its test meet (its gates), whichever broker
    carries the messages (``JOBLEDGER_TEST_REDIS_URL``, set by tests/conftest.py)."""
    return redis.Redis.from_url(os.environ["JOBLEDGER_TEST_REDIS_URL"])


# Started eagerly (lazy_start=False): its tests check `running` (or a cancel intent, a
# lost execution) the moment the body announces itself at its gate.
@job_task("example.gated", GatedPayload, lazy_start=False)
def gated(job: JobContext, payload: GatedPayload) -> dict[str, int]:
    """Take one token from the Redis list ``gate`` per step, reporting progress and
    checking for a cancel between steps; announces each step on ``<gate>:at``."""
    client = gate_redis()
    for step in range(1, payload.steps + 1):
        client.rpush(gate_key(payload.gate) + ":at", step)
        while client.blpop([gate_key(payload.gate)], timeout=1) is None:
            job.check_canceled()
        job.check_canceled()
        job.progress(100 * step / payload.steps, f"step {step} of {payload.steps}")
        job.log(f"step {step} done")
    return {"steps": payload.steps}


@job_task("example.stubborn", GatedPayload)
def stubborn(job: JobContext, payload: GatedPayload) -> dict[str, int]:
    """Wait for one token on ``gate``, ignoring the soft time limit: only the hard one
    (or the token) stops it. Its type's limits are set by the test session's
    ``JOBLEDGER_TIME_LIMITS`` (tests/conftest.py)."""
    client = gate_redis()
    client.rpush(gate_key(payload.gate) + ":at", 1)
    while True:
        try:
            if client.blpop([gate_key(payload.gate)], timeout=1) is not None:
                return {"steps": 1}
        except SoftTimeLimitExceeded:
            job.log("soft time limit ignored")


class NoisyPayload(JobPayload):
    size: int


@job_task("example.noisy", NoisyPayload)
def noisy(job: JobContext, payload: NoisyPayload) -> dict[str, int]:
    """Write one log line of ``size`` characters."""
    job.log("x" * payload.size)
    return {"size": payload.size}


class PairPayload(JobPayload):
    value: int
    message: str = "second step failed"
    gate: str = ""


@chain_job(
    "example.pair",
    PairPayload,
    steps=[
        Step("example.echo", lambda p: {"value": p.value}),
        Step("example.echo", lambda p: {"value": p.value + 1}),
    ],
    subject="value",
)
def pair() -> None:
    """Two echo steps."""


@chain_job(
    "example.pair_failing",
    PairPayload,
    steps=[
        Step("example.echo", lambda p: {"value": p.value}),
        Step("example.fail", lambda p: {"message": p.message}),
        Step("example.echo", lambda p: {"value": p.value}),
    ],
)
def pair_failing() -> None:
    """Echo, then a failing step, then a step that never runs."""


@chain_job(
    "example.pair_gated",
    PairPayload,
    steps=[
        Step("example.gated", lambda p: {"gate": p.gate, "steps": 2}),
        Step("example.echo", lambda p: {"value": p.value}),
    ],
)
def pair_gated() -> None:
    """A gated first step (to cancel mid-chain), then an echo."""


@job_task("example.unstorable", EchoPayload)
def unstorable(job: JobContext, payload: EchoPayload) -> dict[str, object]:
    """Return a result the ledger cannot store as JSON."""
    return {"value": payload.value, "handle": object()}


class SuicidePayload(JobPayload):
    signal: int = 9


@job_task("example.suicide", SuicidePayload)
def suicide(job: JobContext, payload: SuicidePayload) -> None:
    """Kill the pool process that runs it (SIGKILL by default): what a job that runs out
    of memory or segfaults does to its worker, every time it is delivered."""
    os.kill(os.getpid(), payload.signal)


@chain_job(
    "example.pair_suicide",
    PairPayload,
    steps=[
        Step("example.suicide", lambda p: {}),
        Step("example.echo", lambda p: {"value": p.value}),
    ],
)
def pair_suicide() -> None:
    """A first step that kills its process every time, then a step that never runs."""


class LeakyPayload(JobPayload):
    text: str
    uri: str
    label: str
    outcome: str = "succeed"  # succeed | partial | fail | cancel


@job_task("example.leaky", LeakyPayload, subject="label")
def leaky(job: JobContext, payload: LeakyPayload) -> dict[str, Any]:
    """Write ``text`` (full of secrets, see tests/support/secrets.py) into every column
    a job body can reach, then end as ``outcome`` says, with ``text`` in the reason."""
    job.progress(50, payload.text)
    job.log(payload.text)
    job.record_file("in", payload.uri)
    job.result_url = payload.uri
    if payload.outcome == "fail":
        raise RuntimeError(payload.text)
    if payload.outcome == "cancel":
        raise JobCanceled(payload.text)
    if payload.outcome == "partial":
        job.add_error(payload.text, row=1)
    return {"echo": payload.text, "uri": payload.uri}


@chain_job(
    "example.leaky_pair",
    LeakyPayload,
    steps=[
        Step("example.leaky", lambda p: {"text": p.text, "uri": p.uri, "label": p.label}),
        Step(
            "example.leaky",
            lambda p: {"text": p.text, "uri": p.uri, "label": p.label, "outcome": p.outcome},
        ),
    ],
    subject="label",
)
def leaky_pair() -> None:
    """Two leaky steps; the second ends as ``outcome`` says."""


@job_task(
    "example.leaky_retry",
    LeakyPayload,
    autoretry_for=(RuntimeError,),
    max_retries=1,
    default_retry_delay=0,
)
def leaky_retry(job: JobContext, payload: LeakyPayload) -> None:
    """Raise ``text`` every time: Celery retries once (a ``task-retried`` event and a
    republished message), then the job fails."""
    raise RuntimeError(payload.text)


class QuickPayload(JobPayload):
    value: int = 0


@job_task("example.quick", QuickPayload)
def quick(job: JobContext, payload: QuickPayload) -> dict[str, int]:
    """Return at once, writing nothing on its way: the job the lazy start is for."""
    return {"value": payload.value}


@job_task("example.quiet", GatedPayload)
def quiet(job: JobContext, payload: GatedPayload) -> dict[str, int]:
    """Announce ``"<attempt>:<pid>"`` on ``<gate>:at``, then wait for one token on the
    gate without any checkpoint, log or progress: the ledger hears of it only through
    its lazy start's timer (or its outcome)."""
    client = gate_redis()
    client.rpush(gate_key(payload.gate) + ":at", f"{job.attempt}:{os.getpid()}")
    while client.blpop([gate_key(payload.gate)], timeout=1) is None:
        pass
    return {"attempt": job.attempt}


@job_task("example.gil_bound", QuickPayload)
def gil_bound(job: JobContext, payload: QuickPayload) -> None:
    """Hold Python's GIL from its first moment until the worker kills it: one C loop
    that never reaches the interpreter's eval loop, so no other thread of the process
    runs meanwhile and no signal handler either (not even the soft time limit's): only
    a hard time limit ends it."""
    sum(range(10**15 + payload.value))


@job_task("example.counted", GatedPayload)
def counted(job: JobContext, payload: GatedPayload) -> dict[str, int]:
    """Note its job id on ``<gate>:ran`` each time its body runs, then wait for one token
    on the gate without any checkpoint, log or progress (as ``example.quiet``): while it
    waits, its start is pending (the lazy start) and its message reserved."""
    client = gate_redis()
    client.rpush(gate_key(payload.gate) + ":ran", str(job.job_id))
    while client.blpop([gate_key(payload.gate)], timeout=1) is None:
        pass
    return {"attempt": job.attempt}
