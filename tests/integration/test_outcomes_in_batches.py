"""Quick jobs' starts and outcomes written many per statement (the worker's group commit,
app.ledger.runtime.group_commit) on the real PostgreSQL ledger: each job moves as the
one-job statement moves it, under its own guard; a refused one is left as it is and
noted; SQLite writes no batches (its pool processes write each job).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from app import db
from app.config import settings
from app.ledger import transitions as ledger
from app.ledger.engines.postgresql import RECORD_STARTED_FINISHED_MANY
from app.ledger.rules.states import JobStatus
from app.ledger.runtime import group_commit
from models.tables import jobs, logs
from tests.integration.test_engine_contract import (
    event_rows,
    execution_of,
    history,
    job_row,
    late,
    queued,
    set_row,
    start,
)
from tests.support.engines import ledger_on

S = JobStatus
#: What the two ways must write alike (ids, execution ids and times differ).
COMPARED = (
    *("status", "previous_status", "attempts", "worker", "worker_pid", "result", "errors"),
    *("result_url", "progress", "failure_reason", "queue", "lost_executions"),
)


@pytest.fixture
def on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with ledger_on("sqlite", tmp_path, monkeypatch):
        yield


def allowed_row(
    job_id: uuid.UUID, execution_id: str, **outcome: Any
) -> tuple[ledger.MayStart, ledger.Execution, tuple[Any, ...]]:
    """The lazy start's read for ``execution_id``, then its outcome bound for a batch."""
    execution = execution_of(execution_id)
    allowed = ledger.may_start(job_id, execution)
    assert allowed is not None
    held = ledger.started_finished_row(
        job_id, late(allowed, execution), source=allowed.status, **outcome
    )
    assert held is not None
    return allowed, late(allowed, execution), held[1]


def test_a_batch_moves_each_job_as_the_one_job_statement_does() -> None:
    plain, twin = queued(), queued()
    again = queued()
    assert start(again, "e0").run
    assert ledger.record_retrying(again, execution_id="e0", reason="again")
    errors = [{"row": 1, "message": "bad"}]

    rows = [
        allowed_row(plain, "e1", result={"n": 1}, result_url="file:///out/1.csv")[2],
        allowed_row(again, "e2", result=None, errors=errors)[2],
    ]
    moved = ledger.record_started_finished_many(rows)

    assert moved == {(str(plain), "e1"), (str(again), "e2")}
    allowed, execution, _ = allowed_row(twin, "e3", result={"n": 1}, result_url="file:///out/1.csv")
    assert (
        ledger.record_started_finished(
            twin, execution, source=allowed.status, result={"n": 1}, result_url="file:///out/1.csv"
        )
        is S.SUCCEEDED
    )
    written, single = job_row(plain), job_row(twin)
    assert {c: written[c] for c in COMPARED} == {c: single[c] for c in COMPARED}
    assert [
        (e["from_status"], e["to_status"], e["message"], e["attempt"], e["actor"])
        for e in event_rows(plain)
    ] == [
        (e["from_status"], e["to_status"], e["message"], e["attempt"], e["actor"])
        for e in event_rows(twin)
    ]
    assert written["execution_id"] == "e1"
    stamps = [e["created_at"] for e in event_rows(plain)]
    assert stamps[1] == written["started_at"] <= stamps[2] == written["completed_at"]
    assert history(again)[-2:] == [("retrying", "running"), ("running", "partial")]
    assert (job_row(again)["attempts"], job_row(again)["errors"]) == (2, errors)


def test_a_job_that_changed_since_its_read_is_left_as_it_is_and_noted() -> None:
    canceled, taken, poisoned, fine = queued(), queued(), queued(), queued()
    outcomes = []
    for job_id, execution_id in ((canceled, "e1"), (taken, "e1"), (poisoned, "e1"), (fine, "e9")):
        _, _, row = allowed_row(job_id, execution_id, result={})
        outcomes.append(group_commit.HandedOutcome(str(job_id), execution_id, "succeeded", row))
    assert ledger.request_cancel(canceled, actor="cli", reason="no") == "canceled"
    assert start(taken, "e2").run  # another delivery took it
    set_row(jobs, poisoned, lost_executions=3)

    group_commit.write(outcomes)

    assert history(canceled) == [(None, "queued"), ("queued", "canceled")]
    assert history(taken) == [(None, "queued"), ("queued", "running")]
    assert job_row(taken)["execution_id"] == "e2"
    assert history(poisoned) == [(None, "queued")]
    assert history(fine)[-1] == ("running", "succeeded")
    with db.engine().connect() as connection:
        noted = {
            (str(row.job_id), row.level)
            for row in connection.execute(select(logs.c.job_id, logs.c.level, logs.c.message))
            if "its start and result could not be recorded" in row.message
        }
    assert {(str(j), "warning") for j in (canceled, taken, poisoned)} <= noted
    assert (str(fine), "warning") not in noted


def test_the_same_job_twice_in_one_batch_moves_once() -> None:
    job_id = queued()
    first = allowed_row(job_id, "e1", result={"copy": 1})[2]
    second = allowed_row(job_id, "e2", result={"copy": 2})[2]

    moved = ledger.record_started_finished_many([first, second])

    assert len(moved) == 1
    assert history(job_id) == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


def test_a_batch_finds_its_jobs_by_primary_key_when_statistics_see_no_queued_job() -> None:
    """The statistics of a ledger see few queued jobs (most are settled); a backlog
    builds up between two ANALYZEs. A batch must still look each job up by its key, not
    read every queued job through the status index (as it did, 4-7 ms a batch)."""
    backlog = [
        ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={}, celery_task_id="t")
        for _ in range(400)
    ]
    assert len(ledger.record_queued_many(backlog)) == len(backlog)
    with db.engine().begin() as connection:  # statistics taken while all were settled
        connection.execute(text("UPDATE jobs SET status = 'succeeded'"))
        connection.execute(text("ANALYZE jobs"))
        connection.execute(text("UPDATE jobs SET status = 'queued'"))
    rows = [allowed_row(job.id, f"e{n}", result={})[2] for n, job in enumerate(backlog[:2])]
    arrays = tuple(list(column) for column in zip(*rows, strict=True))
    # the same statement under a name of its own (the pool's connection may hold the real one)
    probe = replace(RECORD_STARTED_FINISHED_MANY, name="test_plan_probe")
    call, bound = probe.execute_sql((*arrays, settings().max_lost_executions))

    raw = db.engine().raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(probe.prepare_sql())
        plans = []
        for mode in ("force_generic_plan", "force_custom_plan"):
            cursor.execute(f"SET plan_cache_mode = {mode}")
            cursor.execute(f"EXPLAIN {call}", bound)
            plans.append("\n".join(line for (line,) in cursor.fetchall()))
    finally:
        raw.invalidate()  # closed, with the statement prepared on it

    for plan in plans:
        assert "Index Scan using pk_jobs on jobs" in plan, plan
        assert "ix_jobs_status" not in plan, plan
        assert "Seq Scan on jobs" not in plan, plan


@pytest.mark.usefixtures("on_sqlite")
def test_sqlite_writes_no_batches() -> None:
    job_id = queued()
    execution = execution_of("e1")
    allowed = ledger.may_start(job_id, execution)
    assert allowed is not None
    assert not ledger.writes_batches()
    assert (
        ledger.started_finished_row(
            job_id, late(allowed, execution), source=allowed.status, result={}
        )
        is None
    )
