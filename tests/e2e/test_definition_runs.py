"""Jobs made from a definition run on a real worker like any other, linked to the
definition, its version and their firing; a firing run twice runs once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.ledger import definitions
from tests.support.ledger import events, job, wait_for_status

pytestmark = pytest.mark.usefixtures("worker")


def test_definition_runs_are_done_by_the_worker_once_per_firing() -> None:
    made = definitions.create(
        tenant="acme",
        name="household-suggest",
        type="suggest",
        payload={"budget_id": "household"},
        schedule={"every": 3600},
        actor="api",
        changed_by="key-ops",
    )
    definitions.update(
        "acme",
        "household-suggest",
        {"payload": {"budget_id": "household", "batch_size": 50}},
        actor="cli",
        changed_by="alice",
    )
    firing = datetime(2026, 1, 1, 9, tzinfo=UTC)

    scheduled = definitions.run(
        "acme", "household-suggest", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    twice = definitions.run(
        "acme", "household-suggest", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    by_hand = definitions.run(
        "acme", "household-suggest", scheduled_for=None, trigger="manual", created_by="alice"
    )

    assert scheduled is not None
    assert by_hand is not None
    assert twice is None
    for job_id, trigger in ((scheduled, "beat"), (by_hand, "manual")):
        row = wait_for_status(job_id, "succeeded")
        assert row["definition_id"] == made.id
        assert row["definition_version"] == 2
        assert row["trigger"] == trigger
        assert row["tenant"] == "acme"
        assert row["payload"]["batch_size"] == 50
        assert [e["to_status"] for e in events(job_id)] == ["queued", "running", "succeeded"]
    assert job(scheduled)["scheduled_for"] is not None
    assert job(by_hand)["scheduled_for"] is None
