"""The bulk enqueue path (many jobs recorded in one transaction, then published), and
what both enqueue paths record when the broker refuses the messages."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection
from kombu.exceptions import OperationalError

from app.exceptions import InvalidPayload
from app.ledger.rules.naming import NAME_PATTERN
from tests.support import ledger as read
from tests.support.jobs import echo
from tests.support.processes import WorkerProcess

JOB_ID = uuid.UUID("5f0c7a52-1d2b-4c3e-9a8b-7c6d5e4f3a21")
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_many_jobs_are_recorded_then_run(worker: WorkerProcess) -> None:
    results = echo.apply_many([{"value": n} for n in range(200)], tenant="acme")
    assert len(results) == 200
    for result in (results[0], results[-1]):
        row = read.wait_for_status(result.id, "succeeded")
        assert row["tenant"] == "acme"
        assert read.transitions(result.id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
    names = read.names()
    assert len(set(names)) == 200
    assert all(NAME_PATTERN.match(name) for name in names)
    assert read.count("SELECT count(*) FROM job_events WHERE to_status = 'queued'") == 200


def test_one_bad_payload_refuses_the_whole_batch_naming_it() -> None:
    with pytest.raises(InvalidPayload) as refused:
        echo.apply_many([{"value": 1}, {"value": "two"}, {"value": 3}])
    assert list(refused.value.fields) == ["[1].value"]
    assert read.count("SELECT count(*) FROM jobs") == 0


def test_a_job_whose_message_the_broker_refuses_fails_saying_why() -> None:
    """Recorded ``queued`` first, then the publish fails: the job must not wait forever."""
    nowhere = Connection(NOWHERE)
    with nowhere, pytest.raises(OperationalError):
        echo.apply_async(
            kwargs={"value": 1}, task_id=str(JOB_ID), producer=nowhere.Producer(), retry=False
        )

    row = read.job(JOB_ID)
    assert row is not None
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith("could not publish the job to the broker: ")
    assert read.transitions(JOB_ID) == [(None, "queued"), ("queued", "failed")]


def test_a_bulk_the_broker_refuses_fails_every_unsent_job_saying_why() -> None:
    nowhere = Connection(NOWHERE)
    with nowhere, pytest.raises(OperationalError):
        echo.apply_many([{"value": n} for n in range(3)], producer=nowhere.Producer(), retry=False)

    assert read.count("SELECT count(*) FROM jobs") == 3
    assert (
        read.count(
            "SELECT count(*) FROM jobs WHERE status = 'failed' "
            "AND failure_reason LIKE 'could not publish the job to the broker: %'"
        )
        == 3
    )
