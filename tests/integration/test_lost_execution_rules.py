"""The start's rules for a job found ``running`` under another execution, on both
engines (PostgreSQL's prepared statement and the generic SQLite path): a live execution
keeps the job (the new delivery is deferred), a dead one is a lost execution, and after
``JOBLEDGER_MAX_LOST_EXECUTIONS`` of them the job is failed instead of run.

The worker and the lifeline say which execution died (:func:`record_execution_lost`);
whether a worker is alive is the caller's ``is_alive`` answer, given here directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db
from app.config import settings
from app.ledger import steps
from app.ledger import transitions as ledger
from app.migrate import upgrade

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


@pytest.fixture(params=["postgresql", "sqlite"])
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        monkeypatch.setenv("JOBLEDGER_DATABASE_URL", url)
        settings.cache_clear()
        db.reset()
        upgrade(database_url=url)
        yield "sqlite"
        db.reset()
        monkeypatch.undo()
        settings.cache_clear()
    else:
        yield "postgresql"


def job_row(job_id: uuid.UUID) -> dict[str, object]:
    with db.engine().connect() as connection:
        row = connection.execute(
            text("SELECT * FROM jobs WHERE id = :id"),
            {"id": str(job_id) if db.is_postgresql() else job_id.hex},
        ).mappings()
        return dict(row.one())


def history(job_id: uuid.UUID) -> list[tuple[str | None, str]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT from_status, to_status FROM job_events WHERE job_id = :id ORDER BY id"),
            {"id": str(job_id) if db.is_postgresql() else job_id.hex},
        )
        return [(row[0], row[1]) for row in rows]


def queued() -> uuid.UUID:
    job_id = uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id="t")
    )
    return job_id


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


def never_asked(worker: str) -> bool:
    raise AssertionError(f"asked whether {worker} is alive")


@pytest.mark.usefixtures("engine_kind")
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


@pytest.mark.usefixtures("engine_kind")
def test_a_second_delivery_whose_first_execution_s_worker_is_gone_takes_over() -> None:
    job_id = queued()
    start(job_id, "e1")

    second = start(job_id, "e2", worker="w2", alive=False)

    assert (second.run, second.attempt) == (True, 2)
    row = job_row(job_id)
    assert (row["execution_id"], row["worker"], row["lost_executions"]) == ("e2", "w2", 1)
    assert history(job_id)[-2:] == [("running", "retrying"), ("retrying", "running")]


@pytest.mark.usefixtures("engine_kind")
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


@pytest.mark.usefixtures("engine_kind")
def test_an_execution_silent_for_the_lifeline_timeout_is_lost_without_asking() -> None:
    job_id = queued()
    start(job_id, "e1")
    shift = (
        "now() - interval '1 hour'" if db.is_postgresql() else "datetime('now', '-3600 seconds')"
    )
    with db.engine().begin() as connection:
        connection.execute(
            text(f"UPDATE jobs SET heartbeat_at = {shift}, updated_at = {shift}"),
        )

    second = ledger.record_started(
        job_id, celery_task_id="t", execution_id="e2", worker="w2", is_alive=never_asked
    )

    assert second.run
    assert job_row(job_id)["lost_executions"] == 1


@pytest.mark.usefixtures("engine_kind")
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


@pytest.mark.usefixtures("engine_kind")
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


@pytest.mark.usefixtures("engine_kind")
def test_a_manual_retry_starts_the_count_of_lost_executions_again() -> None:
    job_id = queued()
    for n in range(4):
        start(job_id, f"e{n}", alive=False)
    assert job_row(job_id)["status"] == "failed"

    assert ledger.record_requeued(job_id, celery_task_id="t", actor="cli")

    assert job_row(job_id)["lost_executions"] == 0
    assert start(job_id, "e9").run


def test_the_poison_reason_says_what_happened_and_what_to_do() -> None:
    reason = ledger.lost_executions_reason(3)
    assert reason.startswith("its worker process died in each of 3 executions")
    assert "out of memory" in reason
    assert "jobledger retry" in reason


def chained() -> tuple[uuid.UUID, uuid.UUID]:
    job_id, step_id = uuid.uuid4(), uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(id=job_id, type="example.pair", payload={}),
        steps=[
            ledger.NewStep(id=step_id, position=1, step_type="example.echo", celery_task_id="s1"),
            ledger.NewStep(
                id=uuid.uuid4(), position=2, step_type="example.echo", celery_task_id="s2"
            ),
        ],
    )
    return job_id, step_id


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


@pytest.mark.usefixtures("engine_kind")
def test_a_second_delivery_of_a_running_step_is_deferred_while_its_worker_lives() -> None:
    job_id, step_id = chained()
    assert start_step(job_id, step_id, "e1").run

    second = start_step(job_id, step_id, "e2", alive=True)
    taken = start_step(job_id, step_id, "e3", alive=False)

    assert (second.run, second.defer) == (False, True)
    assert (taken.run, taken.attempt) == (True, 2)


@pytest.mark.usefixtures("engine_kind")
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
    with db.engine().connect() as connection:
        statuses = connection.execute(
            text("SELECT status, lost_executions FROM job_steps ORDER BY position")
        ).all()
    assert [tuple(row) for row in statuses] == [("failed", 3), ("canceled", 0)]
