"""A chain step takes every path a job takes outside its body, on a real worker: the
step is found from its message header in the pool process (a retry) and in the worker's
main process (a revoke, a hard time limit), and moves its parent as a step does."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from app.celery import app
from tests.support import domain
from tests.support import ledger as read
from tests.support.chains import pair_flaky, pair_stubborn
from tests.support.jobs import gate_key, pair_gated

pytestmark = pytest.mark.usefixtures("worker")

FINAL = ("succeeded", "partial", "failed", "canceled")


def wait_until_at_step(client: redis.Redis, gate: str, step: int, timeout: float = 30) -> None:
    """Block until the gated step announces it is waiting at ``step``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = client.blpop([gate_key(gate) + ":at"], timeout=1)
        if item is not None and int(item[1]) == step:
            return
    raise AssertionError(f"gated step never reached step {step}")


def step_walk(job_id: str, position: int) -> list[tuple[str | None, str]]:
    """The transitions of one step of a chained job, in order."""
    rows = domain.query(
        "SELECT e.from_status, e.to_status FROM job_events e "
        "JOIN job_steps s ON s.id = e.step_id "
        "WHERE e.job_id = :id AND s.position = :position ORDER BY e.id",
        id=job_id,
        position=position,
    )
    return [(row["from_status"], row["to_status"]) for row in rows]


def test_a_step_celery_retries_goes_retrying_then_runs_and_the_chain_succeeds() -> None:
    parent = pair_flaky.delay(value=5)

    job = read.wait_for_status(parent.id, *FINAL, timeout=60)

    assert job["status"] == "succeeded"
    first, second = domain.steps(parent.id)
    assert (first["status"], first["attempts"]) == ("succeeded", 2)
    assert step_walk(parent.id, 1) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    assert (second["status"], second["result"]["value"]) == ("succeeded", 5)


def test_a_step_stopped_by_its_hard_time_limit_fails_itself_its_parent_and_the_rest(
    gate: str,
) -> None:
    """The worker's main process sees the hard limit (``task_failure``): it finds the
    step from the task id alone."""
    parent = pair_stubborn.delay(value=1, gate=gate)

    job = read.wait_for_status(parent.id, *FINAL, timeout=60)

    assert job["status"] == "failed"
    assert job["failure_reason"].startswith("step 1 failed: timed out after 3 s (hard")
    first, second = domain.steps(parent.id)
    assert first["status"] == "failed"
    assert first["failure_reason"].startswith("timed out after 3 s (hard time limit")
    assert (second["status"], second["attempts"]) == ("canceled", 0)


def test_a_revoked_step_cancels_itself_its_parent_and_the_steps_after_it(
    redis_client: redis.Redis, gate: str
) -> None:
    """The worker's main process meets the revoked message (``task_revoked``): it finds
    the step from the message's header."""
    parent = pair_gated.delay(value=1, gate=gate)
    wait_until_at_step(redis_client, gate, 1)
    second_task = str(domain.steps(parent.id)[1]["celery_task_id"])
    replies = app.control.revoke(second_task, reply=True, timeout=5)
    assert replies, "no worker acknowledged the revoke"

    redis_client.rpush(gate_key(gate), "go", "go")
    job = read.wait_for_status(parent.id, *FINAL, timeout=60)

    assert job["status"] == "canceled"
    assert "revoked before it ran" in job["failure_reason"]
    first, second = domain.steps(parent.id)
    assert first["status"] == "succeeded"
    assert (second["status"], second["attempts"]) == ("canceled", 0)
    assert "revoked before it ran" in second["failure_reason"]
    assert uuid.UUID(second_task) == second["id"]
