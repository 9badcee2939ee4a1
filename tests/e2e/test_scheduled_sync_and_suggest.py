"""``scheduled_sync_and_suggest`` end to end: a definition of the type fired by a real
``celery -A app beat`` and run by a real worker (the chain's two steps, the suggestions
written), a scheduled run canceled mid-sync, and the payloads a definition is refused
for."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.exceptions import InvalidPayload
from app.ledger import definitions
from app.ledger.transitions import request_cancel
from tasks.scheduled_sync_and_suggest import scheduled_sync_and_suggest
from tests.e2e.test_definitions_through_beat import _no_definitions, beat, client, wait_for
from tests.support import budgets, domain
from tests.support.api import ACME
from tests.support.processes import WorkerProcess

__all__ = ["_no_definitions", "beat", "client"]  # the fixtures this module takes over

HEADER, finished = budgets.BANK_HEADER, budgets.finished
ROWS = [
    ["t1", "2024-01-02", "COFFEE SHOP #12", "-3.50", "Coffee", "2024-01-02T10:00:00"],
    ["t2", "2024-01-05", "Coffee Shop #31", "-4.10", "Coffee", "2024-01-05T10:00:00"],
    ["u1", "2024-02-03", "Coffee Shop #7", "-3.20", "", "2024-02-03T10:00:00"],
]


def test_a_definition_of_the_type_runs_on_beat_as_the_sync_and_suggest_chain(
    client: TestClient, worker: WorkerProcess, beat: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, ROWS)
    budget = domain.unique("scheduled")
    created = client.post(
        "/definitions",
        json={
            "name": "nightly",
            "type": "scheduled_sync_and_suggest",
            "payload": {"budget_id": budget, "source": str(source)},
            "schedule": {"every": 1},
        },
        headers=ACME,
    )
    assert created.status_code == 201, created.text

    fired = wait_for(
        lambda: domain.query(
            "SELECT * FROM jobs WHERE type = 'scheduled_sync_and_suggest' ORDER BY created_at"
        ),
        30,
        beat,
    )[0]
    run = finished(str(fired["id"]))

    assert run["status"] == "succeeded", run["failure_reason"]
    assert (run["trigger"], run["created_by"], run["tenant"]) == ("schedule", "beat", "acme")
    assert run["definition_id"] == uuid.UUID(created.json()["id"])
    assert run["scheduled_for"] is not None
    assert [(s["step_type"], s["status"]) for s in domain.steps(run["id"])] == [
        ("sync", "succeeded"),
        ("suggest", "succeeded"),
    ]
    assert run["result"]["suggest"]["suggestions"] == 1
    pending = domain.query(
        "SELECT s.category FROM suggestions s WHERE s.tenant = 'acme' AND s.budget_id = :b "
        "AND s.status = 'pending'",
        b=budget,
    )
    assert pending == [{"category": "Coffee"}]


def test_a_scheduled_run_canceled_mid_sync_cancels_both_steps(worker: WorkerProcess) -> None:
    slow = budgets.slow_bank()
    budget = domain.unique("slow")
    with domain.http_server({"/bank.csv": slow}) as base:
        definitions.create(
            tenant="acme",
            name="slow-sync",
            type="scheduled_sync_and_suggest",
            payload={"budget_id": budget, "source": f"{base}/bank.csv"},
            schedule={"every": 3600},
            actor="cli",
            changed_by="test",
        )
        # the firing as beat makes it (definitions.run is what the beat tick calls)
        job_id = definitions.run(
            "acme",
            "slow-sync",
            scheduled_for=datetime.now(UTC).replace(microsecond=0),
            trigger="beat",
            created_by="beat",
        )
        assert job_id is not None
        domain.wait_until(
            lambda: (
                len(domain.query("SELECT id FROM transactions WHERE budget_id = :b", b=budget))
                == 500
            ),
            "first batch synced",
        )
        assert request_cancel(job_id, actor="api", reason="stop") == "requested"
        slow.next_part()
        parent = finished(str(job_id))

    assert parent["status"] == "canceled"
    assert parent["type"] == "scheduled_sync_and_suggest"
    assert [s["status"] for s in domain.steps(job_id)] == ["canceled", "canceled"]
    assert domain.query("SELECT id FROM suggestions WHERE budget_id = :b", b=budget) == []


def test_bad_payloads_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidPayload) as refused:
        definitions.create(
            tenant="acme",
            name="broken",
            type="scheduled_sync_and_suggest",
            payload={"budget_id": "b"},
            schedule={"every": 60},
            actor="cli",
            changed_by="test",
        )
    assert "payload.source" in refused.value.fields
    with pytest.raises(InvalidPayload) as refused:
        scheduled_sync_and_suggest.delay("b", "bank.csv", full_resync="sometimes")
    assert "full_resync" in refused.value.fields
    assert definitions.get("acme", "broken") is None
    assert domain.query("SELECT id FROM jobs") == []
