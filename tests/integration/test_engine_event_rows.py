"""The event rows of the hot path, column by column, the same on every engine (the
contract suite's engines: PostgreSQL's fast path and SQLite's shared statements).

The PostgreSQL finish names the worker of the execution it finishes (the job row's); the
shared statement must too, or the history of the same job reads differently by database.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.ledger import transitions as ledger
from app.ledger.rules.attribution import attributed
from app.ledger.rules.states import JobStatus
from tests.integration.test_engine_contract import engine_kind as engine_kind  # both engines
from tests.integration.test_engine_contract import event_rows, queued, start

S = JobStatus


def rows(job_id: Any) -> list[tuple[Any, ...]]:
    return [
        (e["from_status"], e["to_status"], e["attempt"], e["worker"], e["actor"], e["message"])
        for e in event_rows(job_id)
    ]


@pytest.mark.parametrize(
    ("errors", "outcome", "message"),
    [(None, S.SUCCEEDED, "finished"), ([{"item": 1}], S.PARTIAL, "finished with 1 item errors")],
)
def test_queued_started_and_finished_write_the_same_rows_on_every_engine(
    errors: list[dict[str, Any]] | None, outcome: JobStatus, message: str
) -> None:
    job_id = queued()
    assert start(job_id, "e1", worker="w7").run

    assert ledger.record_finished(job_id, execution_id="e1", result={}, errors=errors) is outcome

    assert rows(job_id) == [
        (None, "queued", 0, None, "producer", "queued by producer"),
        ("queued", "running", 1, "w7", "worker", "started on w7"),
        ("running", outcome.value, 1, "w7", "worker", message),
    ]


def test_a_job_queued_by_a_named_key_names_it_and_its_operation_on_every_engine() -> None:
    with attributed("ci-key", operation_id=41):
        job_id = queued()

    [created] = event_rows(job_id)
    assert (created["to_status"], created["actor_name"], created["operation_id"]) == (
        "queued",
        "ci-key",
        41,
    )
