"""The engine contract: the same tests against every ledger engine (PostgreSQL, the
session's test database; SQLite, a migrated file in ``tmp_path``), through the door
(:mod:`app.ledger.transitions`, :mod:`app.ledger.steps`).

Every (source, target) pair of statuses is tried for jobs and for steps: an edge of
``PREDECESSORS`` moves the row and writes exactly one event, any other pair writes
nothing. So a transition added to the state table is held to both engines here without
a line of this file changing. Then: the lost-execution restart (two events), stale
executions refused, idempotent re-publish, run names, sanitising of what is stored,
timestamps in order, the operator's cancel, the lifeline's orphan, metadata notes and
the status counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app import db
from app.ledger import engines, steps
from app.ledger import transitions as ledger
from app.ledger.engines.base import aware
from app.ledger.reads import counts
from app.ledger.rules import attribution
from app.ledger.rules.naming import NAME_PATTERN
from app.ledger.rules.sanitise import MAX_PROGRESS_MESSAGE, MAX_TEXT
from app.ledger.rules.states import PREDECESSORS, JobStatus
from models.tables import events, files, jobs, logs
from models.tables import steps as step_rows
from tests.support.engines import KINDS, ledger_on
from tests.support.secrets import GITHUB, TEXT, URL, leaked

S = JobStatus

LOST_THREE_TIMES = [
    (None, "queued"),
    ("queued", "running"),
    ("running", "retrying"),
    ("retrying", "running"),
    ("running", "retrying"),
    ("retrying", "running"),
    ("running", "retrying"),
    ("retrying", "failed"),
]


@pytest.fixture(params=KINDS, autouse=True)
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs once per engine (tests/support/engines.py)."""
    with ledger_on(request.param, tmp_path, monkeypatch) as kind:
        yield kind


# -- reading and shaping rows, the same on every engine (Core, not SQL text) -------------


def job_row(job_id: uuid.UUID) -> dict[str, Any]:
    with db.engine().connect() as connection:
        return dict(connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one())


def step_row(step_id: uuid.UUID) -> dict[str, Any]:
    with db.engine().connect() as connection:
        query = select(step_rows).where(step_rows.c.id == step_id)
        return dict(connection.execute(query).mappings().one())


def event_rows(job_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        query = select(events).where(events.c.job_id == job_id).order_by(events.c.id)
        return [dict(row) for row in connection.execute(query).mappings()]


def history(job_id: uuid.UUID, step_id: uuid.UUID | None = None) -> list[tuple[str | None, str]]:
    return [
        (e["from_status"], e["to_status"]) for e in event_rows(job_id) if e["step_id"] == step_id
    ]


def set_row(table: Any, row_id: uuid.UUID, **values: Any) -> None:
    with db.engine().begin() as connection:
        connection.execute(update(table).where(table.c.id == row_id).values(**values))


def queued(**fields: Any) -> uuid.UUID:
    job_id = uuid.uuid4()
    new = ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id="t", **fields)
    assert ledger.record_queued(new)
    return job_id


def chained() -> tuple[uuid.UUID, uuid.UUID]:
    job_id, step_id = uuid.uuid4(), uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(id=job_id, type="example.pair", payload={}),
        steps=[
            ledger.NewStep(id=step_id, position=1, step_type="example.echo", celery_task_id="s1"),
            ledger.NewStep(
                id=uuid.uuid4(), position=2, step_type="example.echo", celery_task_id="s2"
            ),
        ],
    )
    return job_id, step_id


def start(
    job_id: uuid.UUID, execution: str, worker: str = "w1", pid: int = 10, alive: bool | None = None
) -> ledger.Start:
    return ledger.record_started(
        job_id,
        celery_task_id="t",
        execution_id=execution,
        worker=worker,
        worker_pid=pid,
        is_alive=None if alive is None else (lambda _: alive),
    )


def start_step(
    job_id: uuid.UUID, step_id: uuid.UUID, execution: str, alive: bool | None = None
) -> ledger.Start:
    return steps.record_step_started(
        job_id,
        step_id,
        celery_task_id="s1",
        execution_id=execution,
        worker="w1",
        worker_pid=10,
        is_alive=None if alive is None else (lambda _: alive),
    )


def never_asked(worker: str) -> bool:
    raise AssertionError(f"asked whether {worker} is alive")


# -- every pair of statuses, jobs and steps ----------------------------------------------

#: For each target status, the door's call that moves a job there (current execution
#: "e1", message "t"; a start is a new execution "e2" whose rival, if any, is alive).
JOB_DOOR: dict[JobStatus, Callable[[uuid.UUID], bool]] = {
    S.QUEUED: lambda j: ledger.record_requeued(j, celery_task_id="t", actor="cli"),
    S.RUNNING: lambda j: (
        ledger.record_started(
            j, celery_task_id="t", execution_id="e2", worker="w2", is_alive=lambda _: True
        ).run
    ),
    S.RETRYING: lambda j: ledger.record_retrying(j, execution_id="e1", reason="again"),
    S.SUCCEEDED: lambda j: ledger.record_finished(j, execution_id="e1", result={}) is not None,
    S.PARTIAL: lambda j: (
        ledger.record_finished(j, execution_id="e1", result={}, errors=[{"item": 1}]) is not None
    ),
    S.FAILED: lambda j: ledger.record_failed(j, reason="boom", execution_id="e1"),
    S.CANCELED: lambda j: ledger.record_canceled(j, reason="stop", execution_id="e1"),
}

#: The same for step 1 of a chain whose parent runs. No step goes back to ``queued``
#: (a chain is retried whole), so that target has no step call.
STEP_DOOR: dict[JobStatus, Callable[[uuid.UUID, uuid.UUID], bool]] = {
    S.RUNNING: lambda j, s: (
        steps.record_step_started(
            j, s, celery_task_id="s1", execution_id="e2", worker="w2", is_alive=lambda _: True
        ).run
    ),
    S.RETRYING: lambda j, s: steps.record_step_retrying(j, s, execution_id="e1", reason="again"),
    S.SUCCEEDED: lambda j, s: (
        steps.record_step_finished(j, s, execution_id="e1", result={}) is not None
    ),
    S.PARTIAL: lambda j, s: (
        steps.record_step_finished(j, s, execution_id="e1", result={}, errors=[{"i": 1}])
        is not None
    ),
    S.FAILED: lambda j, s: steps.record_step_failed(j, s, reason="boom", execution_id="e1"),
    S.CANCELED: lambda j, s: steps.record_step_canceled(j, s, reason="stop", execution_id="e1"),
}

PAIRS = [(source, target) for target in JobStatus for source in JobStatus]


def test_the_door_reaches_every_status() -> None:
    assert set(JOB_DOOR) == set(JobStatus)
    assert set(STEP_DOOR) == set(JobStatus) - {S.QUEUED}


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=lambda s: str(s))
def test_a_job_moves_exactly_along_the_edges_of_the_state_table(
    source: JobStatus, target: JobStatus
) -> None:
    job_id = queued()
    set_row(
        jobs,
        job_id,
        status=source.value,
        execution_id="e1",
        worker="w1",
        heartbeat_at=func.now(),
        failure_reason="earlier",  # a failed job has one (a CHECK constraint)
    )
    before = event_rows(job_id)

    moved = JOB_DOOR[target](job_id)

    after = event_rows(job_id)
    if source in PREDECESSORS[target]:
        assert moved, f"{source} -> {target} is an edge and did not move"
        assert job_row(job_id)["status"] == target.value
        assert [(e["from_status"], e["to_status"]) for e in after[len(before) :]] == [
            (source.value, target.value)
        ]
    else:
        assert not moved, f"{source} -> {target} is not an edge and moved"
        assert job_row(job_id)["status"] == source.value
        assert after == before


@pytest.mark.parametrize(
    ("source", "target"), [p for p in PAIRS if p[1] in STEP_DOOR], ids=lambda s: str(s)
)
def test_a_step_moves_exactly_along_the_edges_of_the_state_table(
    source: JobStatus, target: JobStatus
) -> None:
    job_id, step_id = chained()
    set_row(jobs, job_id, status=S.RUNNING.value, heartbeat_at=func.now())
    set_row(step_rows, step_id, status=source.value, execution_id="e1", worker="w1")
    before = event_rows(job_id)

    moved = STEP_DOOR[target](job_id, step_id)

    after = event_rows(job_id)
    if source in PREDECESSORS[target]:
        assert moved, f"step {source} -> {target} is an edge and did not move"
        assert step_row(step_id)["status"] == target.value
        new = [e for e in after[len(before) :] if e["step_id"] == step_id]
        assert [(e["from_status"], e["to_status"]) for e in new] == [(source.value, target.value)]
    else:
        assert not moved, f"step {source} -> {target} is not an edge and moved"
        assert step_row(step_id)["status"] == source.value
        assert after == before


# -- starts: the lost execution, rivals, the limit (jobs) -----------------------------


def test_the_hot_path_queued_started_redelivered_and_finished() -> None:
    job_id = queued()
    first = ledger.record_started(job_id, celery_task_id="t", execution_id="e1", worker="w")
    again = ledger.record_started(job_id, celery_task_id="t", execution_id="e1", worker="w")
    second = ledger.record_started(job_id, celery_task_id="t", execution_id="e2", worker="w")
    assert (first.attempt, again.run, second.attempt) == (1, True, 2)
    assert ledger.record_finished(job_id, execution_id="e1", result=None) is None
    assert ledger.record_finished(job_id, execution_id="e2", result={"ok": 1}) is S.SUCCEEDED
    assert history(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    row = job_row(job_id)
    assert (row["status"], row["attempts"], row["progress"], row["result"]) == (
        "succeeded",
        2,
        100,
        {"ok": 1},
    )


def test_a_lost_execution_restart_writes_two_events() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    before = len(event_rows(job_id))

    taken = start(job_id, "e2", worker="w2", alive=False)

    assert (taken.run, taken.attempt) == (True, 2)
    new = event_rows(job_id)[before:]
    assert [(e["from_status"], e["to_status"], e["attempt"]) for e in new] == [
        ("running", "retrying", 1),
        ("retrying", "running", 2),
    ]
    assert new[0]["message"] == ledger.REDELIVERED
    row = job_row(job_id)
    assert (row["execution_id"], row["worker"], row["lost_executions"]) == ("e2", "w2", 1)


def test_a_second_delivery_while_the_first_execution_lives_is_deferred() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    asked: list[str] = []

    second = ledger.record_started(
        job_id,
        celery_task_id="t",
        execution_id="e2",
        worker="w2",
        is_alive=lambda worker: asked.append(worker) or True,
    )

    assert (second.run, second.defer) == (False, True)
    assert "e1" in second.reason
    assert "w1" in second.reason
    assert asked == ["w1"]
    row = job_row(job_id)
    assert (row["execution_id"], row["attempts"], row["lost_executions"]) == ("e1", 1, 0)
    assert history(job_id) == [(None, "queued"), ("queued", "running")]


def test_a_takeover_that_finds_another_live_execution_first_is_deferred() -> None:
    """The race: e2 finds e1's worker gone, but while it asks, e3 takes the job over. e2's
    takeover must then see e3 (alive) and defer, not take a live execution's job."""
    job_id = queued()
    start(job_id, "e1")

    def e1_gone_while_e3_takes_over(worker: str) -> bool:
        if worker == "w1":
            assert start(job_id, "e3", worker="w3", alive=False).run
            return False
        return worker == "w3"

    second = ledger.record_started(
        job_id,
        celery_task_id="t",
        execution_id="e2",
        worker="w2",
        worker_pid=20,
        is_alive=e1_gone_while_e3_takes_over,
    )

    assert (second.run, second.defer) == (False, True)
    assert job_row(job_id)["execution_id"] == "e3"


def test_an_execution_silent_for_the_lifeline_timeout_is_lost_without_asking() -> None:
    job_id = queued()
    start(job_id, "e1")
    with db.engine().connect() as connection:
        now = engines.current().database_now(connection)
    an_hour_ago = now - timedelta(hours=1)
    set_row(jobs, job_id, heartbeat_at=an_hour_ago, updated_at=an_hour_ago)

    second = ledger.record_started(
        job_id, celery_task_id="t", execution_id="e2", worker="w2", is_alive=never_asked
    )

    assert second.run
    assert job_row(job_id)["lost_executions"] == 1


def test_a_loss_recorded_by_the_worker_lets_the_next_delivery_run_at_once() -> None:
    job_id = queued()
    start(job_id, "e1", pid=10)

    assert not ledger.record_execution_lost(job_id, reason="x", worker="w1", worker_pid=99)
    assert ledger.record_execution_lost(
        job_id, reason="worker lost: pool process 10 died", worker="w1", worker_pid=10
    )
    assert not ledger.record_execution_lost(job_id, reason="x", worker="w1", worker_pid=10)
    again = ledger.record_started(
        job_id, celery_task_id="t", execution_id="e2", worker="w1", is_alive=never_asked
    )

    assert again.run
    row = job_row(job_id)
    assert (row["status"], row["attempts"], row["lost_executions"]) == ("running", 2, 1)
    assert history(job_id)[-2:] == [("running", "retrying"), ("retrying", "running")]


def test_the_delivery_after_three_lost_executions_fails_the_job_instead_of_running_it() -> None:
    job_id = queued()
    assert start(job_id, "e1", pid=1).run
    assert ledger.record_execution_lost(job_id, reason="lost", worker="w1", worker_pid=1)
    assert start(job_id, "e2", pid=2).run
    assert start(job_id, "e3", pid=3, alive=False).run  # whole worker gone: counted here

    fourth = start(job_id, "e4", pid=4, alive=False)

    assert not fourth.run
    assert not fourth.defer
    row = job_row(job_id)
    assert (row["status"], row["attempts"], row["lost_executions"]) == ("failed", 3, 3)
    assert "died in each of 3 executions" in str(row["failure_reason"])
    assert history(job_id) == LOST_THREE_TIMES
    assert not start(job_id, "e5").run  # a later copy: already failed


def test_a_manual_retry_starts_the_count_of_lost_executions_again() -> None:
    job_id = queued()
    for n in range(4):
        start(job_id, f"e{n}", alive=False)
    assert job_row(job_id)["status"] == "failed"

    assert ledger.record_requeued(job_id, celery_task_id="t", actor="cli")

    row = job_row(job_id)
    assert (row["lost_executions"], row["failure_reason"], row["completed_at"]) == (0, None, None)
    assert start(job_id, "e9").run


def test_the_poison_reason_says_what_happened_and_what_to_do() -> None:
    reason = ledger.lost_executions_reason(3)
    assert reason.startswith("its worker process died in each of 3 executions")
    assert "out of memory" in reason
    assert "jobledger retry" in reason


def test_a_start_of_an_unknown_job_records_it_first() -> None:
    job_id = uuid.uuid4()
    described = ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id="t")

    verdict = ledger.record_started(
        job_id, celery_task_id="t", execution_id="e1", worker="w1", unknown_job=lambda: described
    )

    assert verdict.run
    assert history(job_id) == [(None, "queued"), ("queued", "running")]
    assert event_rows(job_id)[0]["actor"] == "worker"


def test_a_stale_message_does_not_start_the_job() -> None:
    job_id = queued()
    verdict = ledger.record_started(job_id, celery_task_id="old", execution_id="e1", worker="w")
    assert not verdict.run
    assert "stale message old" in verdict.reason
    assert history(job_id) == [(None, "queued")]


# -- starts (steps) ----------------------------------------------------------------------


def test_a_second_delivery_of_a_running_step_is_deferred_while_its_worker_lives() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run

    second = start_step(job_id, step_id, "e2", alive=True)
    taken = start_step(job_id, step_id, "e3", alive=False)

    assert (second.run, second.defer) == (False, True)
    assert (taken.run, taken.attempt) == (True, 2)
    assert history(job_id, step_id)[-2:] == [("running", "retrying"), ("retrying", "running")]
    assert history(job_id) == [(None, "queued"), ("queued", "running")]  # the parent: once


def test_a_step_that_lost_three_executions_fails_and_fails_its_chain() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run
    assert steps.record_step_lost(job_id, step_id, reason="lost", worker="w1", worker_pid=10)
    assert not steps.record_step_lost(job_id, step_id, reason="lost", worker="w1", worker_pid=10)
    assert start_step(job_id, step_id, "e2").run
    assert start_step(job_id, step_id, "e3", alive=False).run

    fourth = start_step(job_id, step_id, "e4", alive=False)

    assert not fourth.run
    parent = job_row(job_id)
    assert parent["status"] == "failed"
    assert str(parent["failure_reason"]).startswith(
        "step 1 failed: its worker process died in each of 3 executions"
    )
    assert parent["errors"][0]["type"] == "LostExecutions"
    with db.engine().connect() as connection:
        query = select(step_rows.c.status, step_rows.c.lost_executions).where(
            step_rows.c.job_id == job_id
        )
        statuses = connection.execute(query.order_by(step_rows.c.position)).all()
    assert [tuple(row) for row in statuses] == [("failed", 3), ("canceled", 0)]


def test_a_chain_runs_its_steps_and_finishes_with_the_last() -> None:
    job_id, first = chained()
    second = _steps_of(job_id)[1]["id"]
    assert start_step(job_id, first, "e1").run
    assert steps.step_checkpoint(job_id, first, "e1", progress=50) is None
    assert job_row(job_id)["progress"] == 25
    assert steps.record_step_finished(job_id, first, execution_id="e1", result=1) is S.SUCCEEDED
    assert job_row(job_id)["status"] == "running"
    assert steps.record_step_started(
        job_id, second, celery_task_id="s2", execution_id="e2", worker="w1"
    ).run
    assert steps.record_step_finished(
        job_id, second, execution_id="e2", result={"n": 2}, errors=[{"item": 1}]
    ) is (S.PARTIAL)

    parent = job_row(job_id)
    assert (parent["status"], parent["progress"]) == ("partial", 100)
    assert parent["result"] == {"example.echo#1": {"value": 1}, "example.echo#2": {"n": 2}}
    assert history(job_id) == [(None, "queued"), ("queued", "running"), ("running", "partial")]


def test_a_canceled_step_cancels_its_parent_and_the_rest_of_the_chain() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run

    assert steps.record_step_canceled(job_id, step_id, reason="stop", execution_id="e1")

    assert job_row(job_id)["status"] == "canceled"
    assert [s["status"] for s in _steps_of(job_id)] == ["canceled", "canceled"]
    assert not steps.record_step_canceled(job_id, step_id, reason="stop", execution_id="e1")


def test_a_step_start_after_its_parent_was_canceled_is_refused() -> None:
    job_id, step_id = chained()
    assert ledger.request_cancel(job_id, actor="cli", reason="enough") == "canceled"
    verdict = start_step(job_id, step_id, "e1")
    assert not verdict.run
    assert [s["status"] for s in _steps_of(job_id)] == ["canceled", "canceled"]


def _steps_of(job_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        query = select(step_rows).where(step_rows.c.job_id == job_id)
        rows = connection.execute(query.order_by(step_rows.c.position)).mappings()
        return [dict(row) for row in rows]


# -- stale executions --------------------------------------------------------------------


def test_a_stale_execution_can_neither_finish_nor_fail_nor_retry_nor_cancel_the_job() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    assert start(job_id, "e2", worker="w2", alive=False).run  # e1 was lost
    before = event_rows(job_id)

    assert ledger.record_finished(job_id, execution_id="e1", result={}) is None
    assert not ledger.record_retrying(job_id, execution_id="e1", reason="late")
    assert not ledger.record_failed(job_id, reason="late", execution_id="e1")
    assert not ledger.record_canceled(job_id, reason="late", execution_id="e1")
    assert not ledger.record_execution_lost(job_id, reason="late", worker="w2", execution_id="e1")
    assert ledger.checkpoint(job_id, "e1", progress=10) is not None  # e1 should stop

    assert event_rows(job_id) == before
    assert ledger.checkpoint(job_id, "e2", progress=10) is None
    assert ledger.record_finished(job_id, execution_id="e2", result={}) is S.SUCCEEDED


def test_a_stale_step_execution_can_neither_finish_nor_fail_nor_retry_nor_cancel() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run
    assert start_step(job_id, step_id, "e2", alive=False).run
    before = event_rows(job_id)

    assert steps.record_step_finished(job_id, step_id, execution_id="e1", result={}) is None
    assert not steps.record_step_retrying(job_id, step_id, execution_id="e1", reason="late")
    assert not steps.record_step_failed(job_id, step_id, reason="late", execution_id="e1")
    assert not steps.record_step_canceled(job_id, step_id, reason="late", execution_id="e1")
    assert steps.step_checkpoint(job_id, step_id, "e1", progress=10) is not None

    assert event_rows(job_id) == before
    assert steps.step_checkpoint(job_id, step_id, "e2", progress=10) is None


# -- publish: idempotent, run names ------------------------------------------------------


def test_publishing_the_same_job_again_changes_nothing() -> None:
    job_id = queued()
    again = ledger.NewJob(id=job_id, type="example.echo", payload={"other": 1})
    assert not ledger.record_queued(again)
    assert ledger.record_queued_many([again]) == set()
    assert history(job_id) == [(None, "queued")]
    assert job_row(job_id)["payload"] == {}


def test_an_idempotency_key_used_twice_by_a_tenant_records_one_job() -> None:
    first = queued(idempotency_key="k1", request_digest="d")
    second = uuid.uuid4()
    duplicate = ledger.NewJob(
        id=second, type="example.echo", payload={}, idempotency_key="k1", request_digest="d"
    )
    assert not ledger.record_queued(duplicate)
    other_tenant = ledger.NewJob(
        id=second, type="example.echo", payload={}, tenant="acme", idempotency_key="k1"
    )
    assert ledger.record_queued(other_tenant)
    assert job_row(first)["idempotency_key"] == "k1"
    assert history(second) == [(None, "queued")]


def test_many_jobs_queued_at_once_get_one_event_each_and_skip_those_that_exist() -> None:
    existing = queued()
    new = [ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={}) for _ in range(5)]
    created = ledger.record_queued_many(
        [ledger.NewJob(id=existing, type="example.echo", payload={}), *new], actor="api"
    )
    assert created == {job.id for job in new}
    for job in new:
        assert history(job.id) == [(None, "queued")]
        assert event_rows(job.id)[0]["actor"] == "api"
    assert history(existing) == [(None, "queued")]


def test_run_names_are_unique_and_follow_the_pattern() -> None:
    one_by_one = [queued() for _ in range(3)]
    at_once = ledger.record_queued_many(
        [ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={}) for _ in range(4)]
    )
    names = [job_row(job_id)["name"] for job_id in [*one_by_one, *at_once]]
    assert len(set(names)) == len(names) == 7
    assert all(NAME_PATTERN.fullmatch(name) for name in names), names


def test_a_batch_takes_consecutive_run_names_in_its_order() -> None:
    queued()
    batch = [ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={}) for _ in range(5)]
    assert ledger.record_queued_many(batch) == {job.id for job in batch}
    names = [job_row(job.id)["name"] for job in batch]
    stamps = {name.split("_")[0] for name in names}
    numbers = [int(name.partition("_")[2] or 0) for name in names]
    assert len(stamps) == 1
    # consecutive from the first (a batch taking a second's first names starts at 0)
    assert numbers == list(range(numbers[0], numbers[0] + 5)), names


def test_a_job_recorded_in_a_batch_is_stored_as_when_recorded_alone() -> None:
    parent = queued()
    fields: dict[str, Any] = {
        "type": "example.echo",
        "payload": {"value": 7, "nested": {"list": [1, "two", None]}},
        "tenant": "acme",
        "subject": "budget 7",
        "trigger": "api",
        "created_by": "someone",
        "celery_task_id": "task-7",
        "queue": "q7",
        "priority": 7,
        "parent_job_id": parent,
        "metadata": {"source": "batch"},
        "idempotency_key": "key-7",
        "request_digest": "digest-7",
    }
    alone, in_batch = uuid.uuid4(), uuid.uuid4()
    with attribution.attributed("ops@acme", operation_id=42):
        assert ledger.record_queued(ledger.NewJob(id=alone, **fields), actor="api")
        batch = [
            ledger.NewJob(id=in_batch, **{**fields, "idempotency_key": "key-8"}),
            ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={}),
        ]
        assert ledger.record_queued_many(batch, actor="api") == {job.id for job in batch}

    ignored = {"id", "name", "idempotency_key", "created_at", "updated_at"}
    expected = {k: v for k, v in job_row(alone).items() if k not in ignored}
    assert {k: v for k, v in job_row(in_batch).items() if k not in ignored} == expected
    assert job_row(in_batch)["idempotency_key"] == "key-8"
    ignored = {"id", "job_id", "created_at"}
    [alone_event], [batch_event] = event_rows(alone), event_rows(in_batch)
    assert {k: v for k, v in batch_event.items() if k not in ignored} == {
        k: v for k, v in alone_event.items() if k not in ignored
    }
    assert batch_event["actor_name"] == "ops@acme"
    assert batch_event["operation_id"] == 42


def test_a_batch_whose_idempotency_keys_are_partly_taken_records_none_of_its_jobs() -> None:
    queued(idempotency_key="raced#0", request_digest="a batch")
    batch = [
        ledger.NewJob(
            id=uuid.uuid4(),
            type="example.echo",
            payload={"value": n},
            idempotency_key=f"raced#{n}",
            request_digest="another batch",
        )
        for n in range(3)
    ]
    assert ledger.record_queued_many(batch) == set()
    with db.engine().connect() as connection:
        assert connection.execute(select(func.count()).select_from(jobs)).scalar_one() == 1
        assert connection.execute(select(func.count()).select_from(events)).scalar_one() == 1


# -- sanitising: only the writer, on every engine -------------------------------------


def test_every_text_a_job_stores_is_sanitised_by_the_writer() -> None:
    other = uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(
            id=other,
            type="example.echo",
            payload={"password": "hunter2-secret", "text": TEXT},
            subject=URL,
            metadata={"note": TEXT, "token": GITHUB},
            celery_task_id="t",
        )
    )
    assert start(other, "e1").run
    assert ledger.checkpoint(other, "e1", progress=5, message=TEXT + "p" * 2000) is None
    with db.engine().begin() as connection:
        assert ledger.note_metadata(connection, other, "e1", {"url": URL, "api_key": "k-123"})
    ledger.append_log(other, TEXT + "l" * (MAX_TEXT * 2), level="warning")
    ledger.record_file(other, direction="in", uri=URL, size=3)
    assert ledger.record_failed(
        other, reason=TEXT + "r" * (MAX_TEXT * 2), errors=[{"message": TEXT}], execution_id="e1"
    )

    row = job_row(other)
    assert leaked(row) == []
    assert "hunter2-secret" not in str(row)
    assert len(row["failure_reason"]) <= MAX_TEXT
    assert len(row["progress_message"]) <= MAX_PROGRESS_MESSAGE
    assert row["metadata"]["api_key"] != "k-123"
    with db.engine().connect() as connection:
        stored = [
            *connection.execute(select(events).where(events.c.job_id == other)).all(),
            *connection.execute(select(logs).where(logs.c.job_id == other)).all(),
            *connection.execute(select(files).where(files.c.job_id == other)).all(),
        ]
    assert leaked(stored) == []
    assert all(len(str(r.message)) <= MAX_TEXT for r in stored if hasattr(r, "message"))


def test_every_text_a_batch_stores_is_sanitised_by_the_writer() -> None:
    batch = [
        ledger.NewJob(
            id=uuid.uuid4(),
            type="example.echo",
            payload={"password": "hunter2-secret", "text": TEXT, "nul": "a\x00b"},
            subject=URL,
            created_by="someone\x00",
            metadata={"note": TEXT, "token": GITHUB},
        )
        for _ in range(2)
    ]
    assert len(ledger.record_queued_many(batch)) == 2
    for job in batch:
        row = job_row(job.id)
        assert leaked(row) == []
        assert leaked(event_rows(job.id)) == []
        assert "hunter2-secret" not in str(row)
        assert "\x00" not in str(row)


def test_a_step_s_cancel_reason_is_stored_sanitised_on_the_step_and_on_its_parent() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run

    assert steps.record_step_canceled(job_id, step_id, reason=TEXT, execution_id="e1")

    parent, step = job_row(job_id), step_row(step_id)
    assert parent["status"] == step["status"] == "canceled"
    assert leaked([parent["failure_reason"], step["failure_reason"], event_rows(job_id)]) == []
    assert "***" in parent["failure_reason"]


def test_a_step_s_failure_is_stored_sanitised_on_its_parent() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run
    errors = [{"type": "Boom", "message": TEXT}]

    assert steps.record_step_failed(job_id, step_id, reason=TEXT, errors=errors, execution_id="e1")

    parent = job_row(job_id)
    assert parent["status"] == "failed"
    assert leaked([parent, step_row(step_id), event_rows(job_id)]) == []


# -- time ------------------------------------------------------------------------------


def test_timestamps_follow_the_order_of_the_transitions() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    assert ledger.checkpoint(job_id, "e1", progress=50) is None
    assert ledger.record_finished(job_id, execution_id="e1", result={}) is S.SUCCEEDED

    row = job_row(job_id)
    assert row["created_at"] <= row["started_at"] <= row["heartbeat_at"] <= row["completed_at"]
    assert row["completed_at"] <= row["updated_at"]
    stamps = [e["created_at"] for e in event_rows(job_id)]
    assert stamps == sorted(stamps)


# -- operators, the lifeline, notes, counts ----------------------------------------------


def test_an_operator_cancel_is_immediate_when_queued_and_an_intent_when_running() -> None:
    waiting, running = queued(), queued()
    assert start(running, "e1").run

    assert ledger.request_cancel(waiting, actor="cli", reason="not needed") == "canceled"
    assert ledger.request_cancel(running, actor="api", reason="not needed") == "requested"
    assert ledger.request_cancel(running, actor="api", reason="again") == "already_requested"
    assert ledger.checkpoint(running, "e1") == "not needed"
    assert ledger.record_canceled(running, reason="not needed", execution_id="e1")
    assert ledger.request_cancel(running, actor="cli", reason="late") is S.CANCELED
    with pytest.raises(LookupError):
        ledger.request_cancel(uuid.uuid4(), actor="cli", reason="none")

    assert history(waiting) == [(None, "queued"), ("queued", "canceled")]
    assert history(running)[-1] == ("running", "canceled")
    with db.engine().connect() as connection:
        lines = connection.execute(select(logs.c.message).where(logs.c.job_id == running)).all()
    assert [line[0] for line in lines] == ["cancel requested by api: not needed"]


def test_a_start_after_a_cancel_was_requested_cancels_instead() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    assert ledger.request_cancel(job_id, actor="cli", reason="stop it") == "requested"
    assert ledger.record_execution_lost(job_id, reason="lost", worker="w1")

    verdict = start(job_id, "e2")

    assert not verdict.run
    assert "canceled before start" in verdict.reason
    assert job_row(job_id)["status"] == "canceled"


def test_the_lifeline_requeues_an_orphan_only_if_it_stayed_quiet() -> None:
    job_id = queued()
    assert start(job_id, "e1").run
    with db.engine().connect() as connection:
        now = engines.current().database_now(connection)

    assert not ledger.record_orphaned(
        job_id, celery_task_id="t2", heartbeat_before=now - timedelta(hours=1)
    )
    assert ledger.record_orphaned(
        job_id, celery_task_id="t2", heartbeat_before=now + timedelta(hours=1)
    )

    row = job_row(job_id)
    assert (row["status"], row["celery_task_id"], row["lost_executions"]) == ("retrying", "t2", 1)
    assert event_rows(job_id)[-1]["actor"] == "lifeline"
    assert ledger.record_failed(
        job_id, reason="gone", actor="lifeline", heartbeat_before=now + timedelta(hours=1)
    )


def test_metadata_notes_merge_only_into_the_current_execution() -> None:
    job_id = queued(metadata={"source": "cron"})
    assert start(job_id, "e1").run
    with db.engine().begin() as connection:
        assert ledger.note_metadata(connection, job_id, "e1", {"rows_committed": 5})
        assert not ledger.note_metadata(connection, job_id, "e0", {"rows_committed": 9})
    assert job_row(job_id)["metadata"] == {"source": "cron", "rows_committed": 5}


def test_a_message_names_its_job_or_its_step() -> None:
    job_id = queued()
    parent, step_id = chained()
    assert ledger.job_for_task("t") == (job_id, None)
    assert ledger.job_for_task("s1") == (parent, step_id)
    assert ledger.job_for_task("nobody") is None


def test_status_counts_count_every_job_once() -> None:
    done, waiting = queued(), queued()
    assert start(done, "e1").run
    assert ledger.record_finished(done, execution_id="e1", result={}) is S.SUCCEEDED
    counts.settle(timedelta(0))
    assert waiting

    found = {(r.type, r.status): int(r.jobs) for r in counts.status_counts()}

    assert found == {("example.echo", "succeeded"): 1, ("example.echo", "queued"): 1}


# -- the lazy start (app.ledger.runtime.lazy_start) --------------------------------------


def execution_of(execution_id: str, *, message: str = "t", pid: int = 10) -> ledger.Execution:
    return ledger.Execution(
        celery_task_id=message, execution_id=execution_id, worker="w1", worker_pid=pid
    )


def late(allowed: ledger.MayStart, execution: ledger.Execution) -> ledger.Execution:
    return ledger.Execution(
        celery_task_id=execution.celery_task_id,
        execution_id=execution.execution_id,
        worker=execution.worker,
        worker_pid=execution.worker_pid,
        started_at=allowed.started_at,
    )


def test_the_lazy_start_s_read_allows_exactly_a_start_that_takes_no_execution_over() -> None:
    waiting = queued()
    allowed = ledger.may_start(waiting, execution_of("e1"))
    assert allowed is not None
    assert (allowed.status, allowed.attempt) == (S.QUEUED, 1)
    assert history(waiting) == [(None, "queued")]  # a read: nothing written

    running = queued()
    assert start(running, "e1").run
    assert ledger.may_start(running, execution_of("e2")) is None  # a holder: the eager way
    assert ledger.record_retrying(running, execution_id="e1", reason="again")
    retry = ledger.may_start(running, execution_of("e2"))
    assert retry is not None
    assert (retry.status, retry.attempt) == (S.RETRYING, 2)

    assert ledger.may_start(waiting, execution_of("e1", message="other")) is None  # stale
    assert ledger.may_start(uuid.uuid4(), execution_of("e1")) is None  # unknown
    canceled = queued()
    assert ledger.request_cancel(canceled, actor="cli", reason="no") == "canceled"
    assert ledger.may_start(canceled, execution_of("e1")) is None
    poisoned = queued()
    set_row(jobs, poisoned, lost_executions=3)
    assert ledger.may_start(poisoned, execution_of("e1")) is None


def test_a_quick_job_writes_its_start_and_outcome_in_one_go_each_at_its_own_time() -> None:
    job_id = queued()
    execution = execution_of("e1")
    allowed = ledger.may_start(job_id, execution)
    assert allowed is not None

    status = ledger.record_started_finished(
        job_id, late(allowed, execution), source=allowed.status, result={"ok": 1}
    )

    assert status is S.SUCCEEDED
    assert history(job_id) == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    row = job_row(job_id)
    assert (row["status"], row["attempts"], row["execution_id"], row["worker_pid"]) == (
        "succeeded",
        1,
        "e1",
        10,
    )
    assert row["result"] == {"ok": 1}
    assert row["progress"] == 100
    stamps = [aware(e["created_at"]) for e in event_rows(job_id)]
    started, completed = aware(row["started_at"]), aware(row["completed_at"])
    assert stamps[1] == started == allowed.started_at  # the true start
    assert aware(row["created_at"]) <= started <= stamps[2]
    assert started <= completed
    # partial with item errors, from retrying
    again = queued()
    assert start(again, "e1").run
    assert ledger.record_retrying(again, execution_id="e1", reason="again")
    allowed = ledger.may_start(again, execution_of("e2"))
    assert allowed is not None
    assert (
        ledger.record_started_finished(
            again,
            late(allowed, execution_of("e2")),
            source=allowed.status,
            result=None,
            errors=[{"row": 1, "message": "bad"}],
        )
        is S.PARTIAL
    )
    assert history(again)[-2:] == [("retrying", "running"), ("running", "partial")]
    assert job_row(again)["attempts"] == 2


def test_a_start_and_outcome_whose_job_changed_since_the_read_write_nothing() -> None:
    canceled = queued()
    execution = execution_of("e1")
    allowed = ledger.may_start(canceled, execution)
    assert allowed is not None
    assert ledger.request_cancel(canceled, actor="cli", reason="no") == "canceled"
    assert (
        ledger.record_started_finished(
            canceled, late(allowed, execution), source=allowed.status, result={}
        )
        is None
    )
    assert ledger.record_started_late(canceled, late(allowed, execution)) is None
    assert history(canceled) == [(None, "queued"), ("queued", "canceled")]

    taken = queued()
    allowed = ledger.may_start(taken, execution)
    assert allowed is not None
    assert start(taken, "e2").run  # another delivery of the same message
    assert (
        ledger.record_started_finished(
            taken, late(allowed, execution), source=allowed.status, result={}
        )
        is None
    )
    assert history(taken) == [(None, "queued"), ("queued", "running")]
    assert job_row(taken)["execution_id"] == "e2"


def test_a_start_written_late_is_dated_at_the_true_start() -> None:
    job_id = queued()
    execution = execution_of("e1")
    allowed = ledger.may_start(job_id, execution)
    assert allowed is not None

    assert ledger.record_started_late(job_id, late(allowed, execution)) == 1

    row = job_row(job_id)
    assert row["status"] == "running"
    started = aware(row["started_at"])
    assert started == allowed.started_at == aware(event_rows(job_id)[1]["created_at"])
    assert started <= aware(row["heartbeat_at"])
    assert ledger.record_finished(job_id, execution_id="e1", result={}) is S.SUCCEEDED


def test_an_execution_lost_before_its_start_was_written_counts_as_started_and_lost() -> None:
    job_id = queued()
    moment = ledger.may_start(job_id, execution_of("e1"))
    assert moment is not None

    for lost in (1, 2, 3):
        assert ledger.record_execution_lost(
            job_id,
            reason="worker lost",
            worker="w1",
            worker_pid=10 + lost,
            celery_task_id="t",
            started_at=moment.started_at,
        )
        row = job_row(job_id)
        assert (row["status"], row["attempts"], row["lost_executions"]) == ("retrying", lost, lost)
    assert aware(job_row(job_id)["started_at"]) == moment.started_at
    # the limit is reached: no fourth lazy start, the eager one fails the job
    assert ledger.may_start(job_id, execution_of("e4")) is None
    assert not start(job_id, "e4").run
    assert history(job_id) == LOST_THREE_TIMES
    # not for another message, nor twice for one loss once recorded
    other = queued()
    assert not ledger.record_execution_lost(
        other,
        reason="lost",
        worker="w1",
        worker_pid=10,
        celery_task_id="u",
        started_at=moment.started_at,
    )
    assert history(other) == [(None, "queued")]


def test_a_loss_before_the_start_dated_by_a_clock_behind_the_database_keeps_the_order() -> None:
    job_id = queued()
    behind = aware(job_row(job_id)["created_at"]) - timedelta(hours=1)

    assert ledger.record_execution_lost(
        job_id, reason="lost", worker="w1", worker_pid=10, celery_task_id="t", started_at=behind
    )

    row = job_row(job_id)
    assert aware(row["started_at"]) >= aware(row["created_at"])
    stamps = [aware(e["created_at"]) for e in event_rows(job_id)]
    assert stamps == sorted(stamps)
    assert history(job_id) == [(None, "queued"), ("queued", "running"), ("running", "retrying")]


def test_an_unwritten_start_is_recorded_only_for_a_job_still_waiting_for_its_message() -> None:
    job_id = queued()
    moment = ledger.may_start(job_id, execution_of("e1"))
    assert moment is not None

    def unwritten(message: str = "t") -> bool:
        return ledger.record_unwritten_start(
            job_id, celery_task_id=message, worker="w1", worker_pid=10, started_at=moment.started_at
        )

    assert not unwritten("other")  # another message's
    assert unwritten()
    assert not unwritten()  # running now: never a second start, never a takeover
    assert ledger.record_failed(job_id, reason="timed out")
    assert history(job_id) == [(None, "queued"), ("queued", "running"), ("running", "failed")]
    row = job_row(job_id)
    assert (row["attempts"], row["worker_pid"]) == (1, 10)
    assert aware(row["started_at"]) == moment.started_at
