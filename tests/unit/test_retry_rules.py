"""Retry policies as pure rules: which errors retry, how many attempts, how long to wait."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.ledger.rules.retries import RetryPolicy, backoff_delay, next_delay, retries


class SourceUnavailable(ConnectionError):
    """A failure a sync would retry."""


def test_a_named_class_and_its_subclasses_are_retried_and_nothing_else() -> None:
    policy = RetryPolicy(retry_on=("ConnectionError",))
    assert retries(policy, ConnectionResetError("reset"))
    assert retries(policy, SourceUnavailable("down"))
    assert not retries(policy, ValueError("bad row"))
    assert not retries(RetryPolicy(), ConnectionError("no retry_on: nothing is retried"))


def test_a_class_may_be_named_by_its_dotted_path() -> None:
    policy = RetryPolicy(retry_on=(f"{__name__}.SourceUnavailable",))
    assert retries(policy, SourceUnavailable("down"))
    assert not retries(policy, ConnectionError("the base class is not named"))


def test_without_jitter_the_wait_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff=2, backoff_max=10, jitter=False)
    assert [backoff_delay(policy, attempt) for attempt in range(1, 6)] == [2, 4, 8, 10, 10]


def test_jitter_draws_from_the_upper_half_of_the_exponential_wait() -> None:
    policy = RetryPolicy(backoff=4, backoff_max=100)
    assert backoff_delay(policy, 3, draw=lambda: 0.0) == 8  # half of 16
    assert backoff_delay(policy, 3, draw=lambda: 0.5) == 12
    assert backoff_delay(policy, 3, draw=lambda: 0.999) == pytest.approx(15.992)


def test_no_next_attempt_once_the_attempts_are_used_up_or_the_error_is_not_retried() -> None:
    policy = RetryPolicy(retry_on=("ConnectionError",), max_attempts=3, backoff=1, jitter=False)
    assert next_delay(policy, ConnectionError(), attempt=1) == 1
    assert next_delay(policy, ConnectionError(), attempt=2) == 2
    assert next_delay(policy, ConnectionError(), attempt=3) is None
    assert next_delay(policy, KeyError("x"), attempt=1) is None


@pytest.mark.parametrize(
    "fields",
    [{"max_attempts": 0}, {"backoff": -1}, {"backoff_max": -5}, {"retry_on": "x", "oops": 1}],
)
def test_a_policy_out_of_range_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicy.model_validate(fields)
