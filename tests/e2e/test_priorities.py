"""Priorities through a real worker on Redis: with one process and a prefetch of one, a
more urgent job overtakes a backlog queued before it, and the ledger records each job's
priority on the user's scale (0 least urgent .. 9 most urgent)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.exceptions import InvalidPayload
from tests.support import api, ledger
from tests.support.api import ACME
from tests.support.jobs import echo, gate_key, gated
from tests.support.processes import WorkerProcess, start_worker


@pytest.fixture
def queue() -> str:
    """A queue only this test's worker consumes (its keys go with the clean-up)."""
    return f"jobledger-test:priorities-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def lone_worker(worker_logs: Path, queue: str) -> Iterator[WorkerProcess]:
    """One process that reserves one message at a time: the broker decides the order."""
    env = {**os.environ, "JOBLEDGER_PREFETCH_MULTIPLIER": "1"}
    process = start_worker(worker_logs, concurrency=1, queue=queue, env=env)
    yield process
    process.stop()


def test_an_urgent_job_overtakes_the_backlog_and_a_low_one_waits_for_it(
    lone_worker: WorkerProcess, queue: str, redis_client: redis.Redis, gate: str
) -> None:
    blocker = gated.apply_async(kwargs={"gate": gate, "steps": 1}, queue=queue)
    ledger.wait_for_status(blocker.id, "running")  # the worker's one process is busy
    low = echo.apply_async(kwargs={"value": 0}, queue=queue, priority=0)
    backlog = [echo.apply_async(kwargs={"value": n}, queue=queue) for n in range(1, 6)]
    urgent = echo.apply_async(kwargs={"value": 99}, queue=queue, priority=9)
    redis_client.rpush(gate_key(gate), 1)

    order = [urgent.id, *(job.id for job in backlog), low.id]
    rows = {job_id: ledger.wait_for_status(job_id, "succeeded", "failed") for job_id in order}
    started = sorted(order, key=lambda job_id: rows[job_id]["started_at"])
    assert started == order
    assert [rows[job_id]["priority"] for job_id in order] == [9, 5, 5, 5, 5, 5, 0]
    assert all(rows[job_id]["worker"] == lone_worker.name for job_id in order)


def test_a_bad_priority_is_refused_naming_the_field_and_nothing_is_written(
    worker: WorkerProcess,
) -> None:
    before = ledger.count("SELECT count(*) FROM jobs")
    for bad in (10, -1, "high", 2.5, True):
        with pytest.raises(InvalidPayload, match="priority"):
            echo.apply_async(kwargs={"value": 1}, priority=bad)
    assert ledger.count("SELECT count(*) FROM jobs") == before


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def test_the_api_takes_a_priority_and_the_ledger_records_it(client: TestClient) -> None:
    created = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 3}, "priority": 8},
        headers=ACME,
    )
    assert created.status_code == 202, created.text
    assert created.json()["priority"] == 8
    refused = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 3}, "priority": 12},
        headers=ACME,
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "priority"
