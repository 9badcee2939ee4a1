"""The bulk enqueue path: many jobs recorded in one transaction, then published."""

from __future__ import annotations

import pytest

from app.exceptions import InvalidPayload
from app.ledger.naming import NAME_PATTERN
from tests.support import ledger as read
from tests.support.jobs import echo
from tests.support.processes import WorkerProcess


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
