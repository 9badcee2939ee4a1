"""A lost execution is one that was running: the writes that record one (the worker's main
process for a dead pool process, the lifeline for a gone worker or an orphan) move only a
``running`` job or step, whatever other edges into ``retrying`` the state table gains.

The state table is widened here with ``queued -> retrying`` (the kind of edge a delayed
first delivery could add): a retry may then start from ``queued``, but no queued job or
step has an execution to lose, so none may be counted as lost or re-queued as an orphan.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app import db
from app.ledger import steps
from app.ledger import transitions as ledger
from app.ledger.rules.states import PREDECESSORS, JobStatus
from models.tables import jobs
from models.tables import steps as step_rows
from tests.support import ledger as read

S = JobStatus


@pytest.fixture(autouse=True)
def _queued_may_go_to_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PREDECESSORS, S.RETRYING, PREDECESSORS[S.RETRYING] | {S.QUEUED})


def set_row(table: Any, row_id: uuid.UUID, **values: Any) -> None:
    with db.engine().begin() as connection:
        connection.execute(update(table).where(table.c.id == row_id).values(**values))


def queued_after_a_run() -> uuid.UUID:
    """A job queued again (a manual retry) that ran before on worker w1, process 10."""
    job_id = uuid.uuid4()
    new = ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id="t")
    assert ledger.record_queued(new)
    set_row(jobs, job_id, worker="w1", worker_pid=10, execution_id="e1")
    return job_id


def test_a_queued_job_has_no_execution_to_lose() -> None:
    job_id = queued_after_a_run()

    by_process = ledger.record_execution_lost(
        job_id, reason="pool process died", worker="w1", worker_pid=10, celery_task_id="t"
    )
    by_execution = ledger.record_execution_lost(
        job_id, reason="worker gone", worker="w1", actor="lifeline", execution_id="e1"
    )

    assert (by_process, by_execution) == (False, False)
    row = read.job(job_id)
    assert (row["status"], row["lost_executions"]) == ("queued", 0)
    assert read.transitions(job_id) == [(None, "queued")]


def test_the_lifeline_never_requeues_a_queued_job_as_an_orphan() -> None:
    job_id = queued_after_a_run()
    later = datetime.now(UTC) + timedelta(days=1)  # quiet since then, whatever the clock

    orphaned = ledger.record_orphaned(job_id, celery_task_id="t2", heartbeat_before=later)

    assert not orphaned
    row = read.job(job_id)
    assert (row["status"], row["celery_task_id"], row["lost_executions"]) == ("queued", "t", 0)
    assert read.transitions(job_id) == [(None, "queued")]


def test_a_queued_step_has_no_execution_to_lose() -> None:
    job_id, step_id = uuid.uuid4(), uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(id=job_id, type="example.pair", payload={}),
        steps=[
            ledger.NewStep(id=step_id, position=1, step_type="example.echo", celery_task_id="s1")
        ],
    )
    set_row(jobs, job_id, status=S.RUNNING.value)
    set_row(step_rows, step_id, worker="w1", worker_pid=10)  # as after a run

    lost = steps.record_step_lost(
        job_id, step_id, reason="pool process died", worker="w1", worker_pid=10, celery_task_id="s1"
    )

    assert not lost
    step_events = [e for e in read.events(job_id) if e["step_id"] == step_id]
    assert [(e["from_status"], e["to_status"]) for e in step_events] == [(None, "queued")]
