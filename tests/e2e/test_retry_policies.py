"""Retry policies through a real worker: each retry is recorded ``retrying`` with the time
of the next attempt, which does not start before it; after the last attempt the job is
``failed`` and dead, every attempt's reason in its history; the dead view, the API
filter and the CLI show it, to its own tenant only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.exceptions import InvalidPayload
from app.ledger.rules.states import JobStatus, is_valid_walk
from tasks import sync_and_suggest
from tests.support import api, ledger
from tests.support.api import ACME
from tests.support.controls import wobbly

pytestmark = pytest.mark.usefixtures("worker")

#: What a ``retrying`` event's message says about the next attempt.
NEXT = re.compile(r"next attempt \(attempt (\d+)\) in ([\d.]+) s, at (\S+)$")


def _retries(job_id: Any) -> list[tuple[dict[str, Any], int, float, datetime]]:
    """Each ``retrying`` event, the attempt it announces, the wait and that attempt's time."""
    found = []
    for event in ledger.events(job_id):
        if event["to_status"] == "retrying":
            match = NEXT.search(event["message"])
            assert match is not None, event["message"]
            found.append((event, int(match[1]), float(match[2]), datetime.fromisoformat(match[3])))
    return found


def _starts(job_id: Any) -> list[datetime]:
    return [e["created_at"] for e in ledger.events(job_id) if e["to_status"] == "running"]


def _valid_walk(job_id: Any) -> bool:
    walk = [
        (None if source is None else JobStatus(source), JobStatus(target))
        for source, target in ledger.transitions(job_id)
    ]
    return is_valid_walk(walk)


def test_a_retried_failure_waits_for_its_next_attempt_then_succeeds() -> None:
    job_id = wobbly.delay(failures=1).id

    row = ledger.wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert (row["status"], row["attempts"], row["retries_exhausted"]) == ("succeeded", 2, False)
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    [(event, attempt, wait, due)] = _retries(job_id)
    assert attempt == 2
    assert "attempt 1 failed: Unreachable: source unreachable on attempt 1" in event["message"]
    assert datetime.fromisoformat(row["metadata"]["next_attempt_at"]) == due
    # the wait is the policy's first one (0.2 to 0.4 s) and the worker kept to it
    assert 0.0 < wait <= 0.4
    assert _starts(job_id)[1] >= due - timedelta(milliseconds=20)


def test_after_the_last_attempt_the_job_fails_dead_with_every_attempts_reason() -> None:
    job_id = wobbly.delay(failures=5).id

    row = ledger.wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert (row["status"], row["attempts"], row["retries_exhausted"]) == ("failed", 3, True)
    assert row["failure_reason"] == (
        "Unreachable: source unreachable on attempt 3 (attempt 3; no attempts left: "
        "retries exhausted)"
    )
    assert _valid_walk(job_id)
    retries = _retries(job_id)
    assert [attempt for _, attempt, _, _ in retries] == [2, 3]
    ended = ("retrying", "failed")
    reasons = [e["message"] for e in ledger.events(job_id) if e["to_status"] in ended]
    for attempt, reason in enumerate(reasons, 1):
        assert f"source unreachable on attempt {attempt}" in reason
    for (_, _, _, due), started in zip(retries, _starts(job_id)[1:], strict=True):
        assert started >= due - timedelta(milliseconds=20)  # never before its time
    # exponential with equal jitter: 0.2-0.4 s, then 0.4-0.8 s (a few ms pass between
    # the draw and the message)
    waits = [wait for _, _, wait, _ in retries]
    assert 0.15 <= waits[0] <= 0.4
    assert 0.35 <= waits[1] <= 0.8
    assert ledger.count("SELECT count(*) FROM dead_jobs WHERE id = :id", id=str(job_id)) == 1


def test_a_failure_the_policy_does_not_name_fails_at_once_and_is_not_dead() -> None:
    job_id = wobbly.delay(failures=1, error="value").id

    row = ledger.wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert (row["status"], row["attempts"], row["retries_exhausted"]) == ("failed", 1, False)
    assert row["failure_reason"] == "ValueError: bad input on attempt 1"
    assert ledger.count("SELECT count(*) FROM dead_jobs") == 0


def test_a_jobs_own_retry_policy_wins_over_its_types() -> None:
    own = {"retry_on": ["ConnectionError"], "max_attempts": 2, "backoff": 0.1, "jitter": False}
    job_id = wobbly.apply_async(kwargs={"failures": 5}, retry_policy=own).id

    row = ledger.wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert (row["status"], row["attempts"], row["retries_exhausted"]) == ("failed", 2, True)
    [(_, attempt, wait, _)] = _retries(job_id)
    assert attempt == 2
    assert wait <= 0.1


def test_a_bad_retry_policy_is_refused_naming_the_field_and_nothing_is_written() -> None:
    with pytest.raises(InvalidPayload, match=r"retry_policy\.max_attempts"):
        wobbly.apply_async(kwargs={"failures": 1}, retry_policy={"max_attempts": 0})
    with pytest.raises(InvalidPayload, match="retry_policy"):
        sync_and_suggest.apply_async(
            kwargs={"budget_id": "b", "source": "/nowhere.csv"},
            retry_policy={"max_attempts": 2},
        )
    assert ledger.count("SELECT count(*) FROM jobs") == 0


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def test_dead_jobs_are_listed_by_the_api_and_the_cli_to_their_tenant_only(
    client: TestClient,
) -> None:
    dead = wobbly.apply_async(kwargs={"failures": 5}, tenant="acme").id
    others = wobbly.apply_async(kwargs={"failures": 5}, tenant="other").id
    alive = wobbly.apply_async(kwargs={"failures": 1}, tenant="acme").id
    for job_id in (dead, others, alive):
        ledger.wait_for_status(job_id, "succeeded", "failed", timeout=60)

    listed = client.get("/jobs", params={"dead": "true"}, headers=ACME)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [str(dead)]
    everything = client.get("/jobs", headers=ACME).json()["items"]
    assert {item["id"] for item in everything} == {str(dead), str(alive)}

    result = CliRunner().invoke(cli, ["jobs", "--dead", "--tenant", "acme", "--json"])
    assert result.exit_code == 0, result.stderr
    assert [item["id"] for item in json.loads(result.stdout)["items"]] == [str(dead)]
    result = CliRunner().invoke(cli, ["jobs", "--dead", "--json"])
    assert {item["id"] for item in json.loads(result.stdout)["items"]} == {str(dead), str(others)}
