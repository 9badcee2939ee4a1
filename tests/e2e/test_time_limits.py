"""Time limits end a job ``failed`` saying "timed out after N s", with a real prefork
worker: the soft limit in the job's own process, the hard one in the worker's main
process (where Celery fires ``task_failure`` for it), never as a lost worker."""

from __future__ import annotations

import pytest

from app.exceptions import InvalidPayload
from tests.support import jobs
from tests.support.ledger import count, transitions, wait_for_status
from tests.support.ledger import job as ledger_job

pytestmark = pytest.mark.usefixtures("worker")


def test_a_soft_time_limit_given_per_job_fails_the_job_saying_it_timed_out(gate: str) -> None:
    result = jobs.gated.apply_async(
        kwargs={"gate": gate, "steps": 1}, soft_time_limit=1, time_limit=60
    )

    job = wait_for_status(result.id, "failed", "succeeded", "canceled", timeout=60)

    assert job["status"] == "failed"
    assert job["failure_reason"].startswith("timed out after 1 s (soft time limit")
    assert job["errors"][-1]["type"] == "SoftTimeLimitExceeded"
    assert transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]


def test_the_hard_time_limit_of_a_job_type_fails_the_job_saying_it_timed_out(gate: str) -> None:
    """``example.stubborn`` ignores its soft limit (1 s); its type's hard limit (3 s, from
    ``JOBLEDGER_TIME_LIMITS``) has the worker kill the process."""
    result = jobs.stubborn.delay(gate=gate)

    job = wait_for_status(result.id, "failed", "succeeded", "canceled", timeout=60)

    assert job["status"] == "failed"
    assert job["failure_reason"].startswith("timed out after 3 s (hard time limit")
    assert "worker lost" not in job["failure_reason"]
    assert transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    assert ledger_job(result.id)["errors"] == [  # type: ignore[index]
        {"type": "TimeLimitExceeded", "message": "TimeLimitExceeded(3.0,)"}
    ]


def test_a_hard_time_limit_given_per_job_overrides_the_type(gate: str) -> None:
    result = jobs.stubborn.apply_async(kwargs={"gate": gate}, time_limit=2, soft_time_limit=1)

    job = wait_for_status(result.id, "failed", "succeeded", "canceled", timeout=60)

    assert job["failure_reason"].startswith("timed out after 2 s (hard time limit")
    assert transitions(result.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]


def test_a_per_job_time_limit_below_the_types_soft_limit_still_stops_the_job(gate: str) -> None:
    """Celery arms the hard limit only after the soft one: with the type's soft limit
    (3000 s) left as it is, ``time_limit=3`` alone would not stop the job for an hour.
    The job gets a soft limit of 90 % of it instead."""
    result = jobs.gated.apply_async(kwargs={"gate": gate, "steps": 1}, time_limit=3)

    job = wait_for_status(result.id, "failed", "succeeded", "canceled", timeout=60)

    assert job["failure_reason"].startswith("timed out after 2.7 s (soft time limit")


@pytest.mark.parametrize(
    "limits",
    [{"soft_time_limit": 10, "time_limit": 5}, {"soft_time_limit": 4000}, {"time_limit": -1}],
)
def test_contradictory_per_job_time_limits_are_refused_before_anything_is_written(
    gate: str, limits: dict[str, float]
) -> None:
    with pytest.raises(InvalidPayload, match="time_limit"):
        jobs.gated.apply_async(kwargs={"gate": gate}, **limits)

    assert count("SELECT count(*) FROM jobs") == 0
