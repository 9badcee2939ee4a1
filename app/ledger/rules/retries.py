"""Retry policies: which failures a job type retries, how often, and how long it waits.

Pure rules (no Celery, no database): :class:`~app.ledger.runtime.task.JobTask` asks
:func:`next_delay` when a body raises, and retries the job after that many seconds or
fails it. A policy comes from ``job_task(…, retry_policy=RetryPolicy(…))`` or, winning over
it, ``JOBLEDGER_RETRY_POLICIES`` (a JSON object type -> policy).

Usage::

    policy = RetryPolicy(retry_on=["ConnectionError"], max_attempts=4, backoff=2)
    next_delay(policy, ConnectionResetError("reset"), attempt=1)   # 1.0 .. 2.0 s
    next_delay(policy, ValueError("bad row"), attempt=1)           # None: not retried
    next_delay(policy, ConnectionResetError("reset"), attempt=4)   # None: no attempts left

The wait before attempt ``n + 1`` is exponential, ``backoff * 2 ** (n - 1)`` capped at
``backoff_max``; with ``jitter`` it is drawn uniformly from the upper half of that
("equal jitter"): retries of many jobs that failed together spread out, and each wait
is still at least half the exponential one, so the backoff keeps growing.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field


class RetryPolicy(BaseModel):
    """How a job type retries (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Exception classes retried, by name (``ConnectionError``) or dotted path
    #: (``tasks.sync.SourceUnavailable``); a subclass of a named class is retried too.
    #: Empty: nothing is retried. A deliberate failure (``JobFailed``), a cancel and a
    #: time limit are never retried.
    retry_on: tuple[str, ...] = ()
    #: Executions at most, the first included (3: the first and two retries).
    max_attempts: int = Field(default=3, ge=1, le=100)
    #: Seconds before the first retry; each next wait doubles.
    backoff: float = Field(default=1.0, ge=0)
    #: The longest wait, seconds.
    backoff_max: float = Field(default=600.0, ge=0)
    #: Draw each wait from the upper half of the exponential one.
    jitter: bool = True


def retries(policy: RetryPolicy, error: BaseException) -> bool:
    """Whether ``policy`` retries ``error`` (its class or a base class is named)."""
    named = set(policy.retry_on)
    for cls in type(error).__mro__:
        if cls.__name__ in named or f"{cls.__module__}.{cls.__qualname__}" in named:
            return True
    return False


def backoff_delay(
    policy: RetryPolicy, attempt: int, draw: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the failed ``attempt`` (1 for the first execution) before the
    next one. ``draw`` gives a number in [0, 1) (tests pass their own)."""
    exponential = float(min(policy.backoff_max, policy.backoff * 2 ** max(0, attempt - 1)))
    if not policy.jitter:
        return exponential
    return exponential / 2 + draw() * exponential / 2


def next_delay(
    policy: RetryPolicy,
    error: BaseException,
    attempt: int,
    draw: Callable[[], float] = random.random,
) -> float | None:
    """Seconds until the next attempt after ``attempt`` failed with ``error``, or None
    when the job must fail now (``error`` is not retried, or no attempts are left)."""
    if attempt >= policy.max_attempts or not retries(policy, error):
        return None
    return backoff_delay(policy, attempt, draw)
