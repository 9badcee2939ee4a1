"""What one tick of the ledger scheduler fires (``LedgerScheduler.fire_due``, no beat
process): the catch-up rule for firings missed while no beat ran (``next_run_at``
back-dated, no waiting for the clock), a firing already made by a beat that died before
moving the definition on, and a definition that cannot run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app import db
from app.celery import app
from app.ledger import definitions, engines
from app.ledger.rules import schedules
from app.ledger.runtime.beat import LedgerScheduler
from models.tables import definitions as definition_rows
from models.tables import jobs

DAY = 24 * 3600


@pytest.fixture
def scheduler() -> LedgerScheduler:
    return LedgerScheduler(app=app, lazy=True)  # lazy: no built-ins, no schedule file


def every_second(name: str, catch_up: str = "skip") -> definitions.Definition:
    return every(name, catch_up, seconds=1)


def every(name: str, catch_up: str, seconds: int) -> definitions.Definition:
    return definitions.create(
        tenant="default",
        name=name,
        type="example.echo",
        payload={"value": 1},
        schedule={"every": seconds},
        catch_up=catch_up,
        actor="cli",
        changed_by="test",
    )


def back_date(name: str, seconds: int) -> None:
    """As if no beat ran for ``seconds``: the next firing lies that far in the past."""
    _set_next_run_at(name, _now().replace(microsecond=0) - timedelta(seconds=seconds))


def back_date_to_latest_firing(name: str, seconds: int) -> None:
    """As if no beat ran since the latest firing of an every-``seconds`` schedule."""
    latest = schedules.next_after({"every": seconds}, _now()) - timedelta(seconds=seconds)
    _set_next_run_at(name, latest)


def _set_next_run_at(name: str, moment: datetime) -> None:
    with db.engine().begin() as connection:
        connection.execute(
            update(definition_rows).where(definition_rows.c.name == name).values(next_run_at=moment)
        )


def runs(definition: definitions.Definition) -> int:
    with db.engine().connect() as connection:
        query = select(func.count()).where(jobs.c.definition_id == definition.id)
        return int(connection.execute(query).scalar_one())


def test_missed_firings_are_skipped(scheduler: LedgerScheduler) -> None:
    made = every_second("skipper", "skip")
    back_date("skipper", 10)
    before = _now()

    assert scheduler.fire_due() == 0  # no beat was active as they fell due: none runs
    assert runs(made) == 0
    after = definitions.get("default", "skipper")
    assert after is not None
    assert after.next_run_at is not None
    assert after.last_fired_for is not None
    assert after.next_run_at > after.last_fired_for
    # moved on past now (not a second call of fire_due: on a slow machine an every-second
    # schedule has a new, rightly made firing by then)
    assert after.next_run_at > before


def test_missed_firings_run_once(scheduler: LedgerScheduler) -> None:
    made = every_second("once", "once")
    back_date("once", 10)
    before = _now()

    assert scheduler.fire_due() == 1  # one run stands for everything missed
    assert runs(made) == 1
    after = definitions.get("default", "once")
    assert after is not None
    assert after.next_run_at is not None
    assert after.next_run_at > before  # moved on past every missed firing


def test_a_firing_made_before_a_beat_died_is_not_made_again(scheduler: LedgerScheduler) -> None:
    # daily, unfired since the day began: one firing is due, and no newer one falls due
    # while the test runs (with an every-second schedule, a slow machine has one by then,
    # rightly made: this test failed so once in CI)
    made = every("half-done", "once", seconds=DAY)
    back_date_to_latest_firing("half-done", seconds=DAY)
    ((_, firings),) = [(d, f) for d, f in definitions.due(_now()) if d.name == "half-done"]
    # the dead beat made the job and died before advancing the definition
    assert definitions.run(
        "default", "half-done", scheduled_for=firings[-1], trigger="beat", created_by="beat"
    )

    assert scheduler.fire_due() == 0
    assert runs(made) == 1
    after = definitions.get("default", "half-done")
    assert after is not None
    assert after.last_fired_for == firings[-1]


def test_a_definition_that_cannot_run_is_passed_and_the_others_fire(
    scheduler: LedgerScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    broken, fine = every_second("broken", "once"), every_second("fine", "once")
    with db.engine().begin() as connection:  # the type's model changed since it was saved
        connection.execute(
            update(definition_rows)
            .where(definition_rows.c.id == broken.id)
            .values(payload={"value": "not a number"})
        )
    back_date("broken", 2)
    back_date("fine", 2)

    assert scheduler.fire_due() == 1
    assert (runs(broken), runs(fine)) == (0, 1)
    assert "broken could not run" in caplog.text
    passed = definitions.get("default", "broken")  # passed, not retried every tick
    assert passed is not None
    assert passed.last_fired_for is not None
    assert passed.next_run_at is not None
    assert passed.next_run_at > passed.last_fired_for


def _now() -> datetime:
    with db.engine().connect() as connection:
        return engines.current().database_now(connection)


@pytest.mark.parametrize("catch_up", ["skip", "once"])
def test_a_late_tick_of_a_running_beat_loses_no_firing(
    scheduler: LedgerScheduler, catch_up: str
) -> None:
    """A beat's ticks drift (each one a little over a second apart): a tick may find two
    firings of an every-second definition due. Both fell due while this beat was active
    and looking, so neither is "missed": the catch-up rule is not theirs (with skip, one
    in thirty was lost on a real beat)."""
    made = every_second("drift", catch_up)
    back_date("drift", 1)  # two firings due: now - 1 s and now (whole seconds)
    due_from = definitions.get("default", "drift")
    assert due_from is not None
    assert due_from.next_run_at is not None
    # the previous tick looked just before the first of them
    scheduler.last_look = due_from.next_run_at - timedelta(milliseconds=30)

    assert scheduler.fire_due() == 2
    assert runs(made) == 2
    after = definitions.get("default", "drift")
    assert after is not None
    assert after.last_fired_for is not None
    assert after.last_fired_for - due_from.next_run_at == timedelta(seconds=1)


def test_firings_before_an_active_beat_last_looked_follow_the_catch_up_rule(
    scheduler: LedgerScheduler,
) -> None:
    """Only what fell due after the beat's last look is all made: a definition left
    unfired for longer (the beat stalled, or the previous tick failed) keeps its rule."""
    made = every_second("stalled", "skip")
    back_date("stalled", 10)
    # the beat looked just before the latest firing (whole seconds): that one it watched
    scheduler.last_look = _now().replace(microsecond=0) - timedelta(milliseconds=30)

    assert scheduler.fire_due() == 1  # the older nine follow skip: only the watched one
    assert runs(made) == 1
