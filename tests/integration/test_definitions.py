"""Job definitions through their door (:mod:`app.ledger.definitions`), on PostgreSQL and
on SQLite: create, update, the append-only change log, validation that writes nothing,
names per tenant, archive, and never deleted while runs point at a definition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import db
from app.config import settings
from app.exceptions import (
    DefinitionArchived,
    DefinitionExists,
    DefinitionNotFound,
    InvalidPayload,
)
from app.ledger import definitions, engines
from app.ledger import transitions as ledger
from app.ledger.engines.base import aware
from app.ledger.rules import schedules
from app.queues import redis_keys, waiting
from models.tables import definition_changes, jobs
from models.tables import definitions as definition_rows
from models.tables import steps as step_rows
from tests.support.engines import KINDS, ledger_on

SUGGEST = {"budget_id": "household"}


@pytest.fixture(params=KINDS, autouse=True)
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs once per engine (tests/support/engines.py)."""
    with ledger_on(request.param, tmp_path, monkeypatch) as kind:
        yield kind


def make(name: str = "nightly", tenant: str = "acme", **fields: Any) -> definitions.Definition:
    values: dict[str, Any] = {
        "type": "suggest",
        "payload": SUGGEST,
        "schedule": {"every": 60},
        "actor": "api",
        "changed_by": "key-ops",
        **fields,
    }
    return definitions.create(tenant=tenant, name=name, **values)


def counts() -> tuple[int, int]:
    with db.engine().connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(definition_rows)).scalar_one(),
            connection.execute(select(func.count()).select_from(definition_changes)).scalar_one(),
        )


def database_now() -> datetime:
    with db.engine().connect() as connection:
        return engines.current().database_now(connection)


# -- create -------------------------------------------------------------------------------


def test_create_stores_the_definition_and_its_creation_in_the_log() -> None:
    made = make(
        schedule={"cron": "*/5 * * * *", "timezone": "Europe/Paris"},
        options={"queue": "reports", "priority": 3, "time_limit": 60},
        catch_up="once",
    )

    assert made == definitions.get("acme", "nightly")
    assert (made.tenant, made.name, made.type, made.version) == ("acme", "nightly", "suggest", 1)
    assert made.payload == SUGGEST
    assert made.schedule == {"cron": "*/5 * * * *", "timezone": "Europe/Paris"}
    assert made.schedule_text == "cron */5 * * * * (Europe/Paris)"
    assert made.options == {"queue": "reports", "priority": 3, "time_limit": 60}
    assert (made.enabled, made.catch_up, made.archived_at, made.last_fired_for) == (
        True,
        "once",
        None,
        None,
    )
    assert made.created_by == "key-ops"
    now = database_now()
    assert made.next_run_at is not None
    assert now < made.next_run_at <= now + timedelta(minutes=5)
    assert made.next_run_at.minute % 5 == 0
    assert made.next_run_at.second == 0
    (log,) = definitions.changes_of(made.id)
    assert (log["version"], log["actor"], log["changed_by"]) == (1, "api", "key-ops")
    assert log["changes"] == made.document()


def test_unscheduled_or_disabled_definitions_have_no_next_run() -> None:
    assert make("by-hand", schedule=None).next_run_at is None
    assert make("off", enabled=False).next_run_at is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "no.such.type"}, "type"),
        ({"payload": {}}, "payload.budget_id"),
        ({"payload": {"budget_id": "household", "colour": "red"}}, "payload.colour"),
        ({"payload": {"budget_id": "x\x00y"}}, "payload.budget_id"),
        ({"payload": ["household"]}, "payload"),
        ({"schedule": {"cron": "*/5 * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "0 9 * * *", "timezone": "Europe/Pariss"}}, "schedule.timezone"),
        ({"schedule": {"every": 0}}, "schedule.every"),
        ({"options": {"retries": 3}}, "options.retries"),
        ({"options": {"priority": 11}}, "options.priority"),
        # refused at save, as apply_async would refuse every firing (app.config.QUEUE_NAME)
        ({"options": {"queue": "has a space"}}, "options.queue"),
        ({"options": {"retry_policy": {"max_attempts": 0}}}, "options.retry_policy.max_attempts"),
        ({"options": {"time_limit": -1}}, "options.time_limit"),
        ({"options": {"time_limit": 10, "soft_time_limit": 20}}, "options.soft_time_limit"),
        ({"catch_up": "all"}, "catch_up"),
        ({"enabled": "yes"}, "enabled"),
        ({"name": "has a space"}, "name"),
        ({"tenant": "../etc"}, "tenant"),
    ],
)
def test_invalid_definitions_name_the_field_and_write_nothing(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as raised:
        make(**fields)
    assert field in raised.value.fields, raised.value.fields
    assert counts() == (0, 0)


def test_a_name_is_unique_per_tenant() -> None:
    make()
    with pytest.raises(DefinitionExists):
        make(payload={"budget_id": "other"})
    assert counts() == (1, 1)
    assert definitions.get("acme", "nightly").payload == SUGGEST  # type: ignore[union-attr]
    make(tenant="globex")  # another tenant may use the name
    assert counts() == (2, 2)


# -- update -------------------------------------------------------------------------------


def test_update_makes_a_version_with_one_change_row() -> None:
    made = make()
    changed = definitions.update(
        "acme",
        "nightly",
        {"payload": {"budget_id": "shop"}, "catch_up": "once", "enabled": True},
        actor="cli",
        changed_by="alice",
    )

    assert changed.version == 2
    assert changed.payload == {"budget_id": "shop"}
    assert changed.catch_up == "once"
    assert changed.next_run_at == made.next_run_at  # timing untouched: same next firing
    log = definitions.changes_of(made.id)
    assert [row["version"] for row in log] == [1, 2]
    assert (log[1]["actor"], log[1]["changed_by"]) == ("cli", "alice")
    # enabled was given its current value: no change, not logged
    assert log[1]["changes"] == {
        "payload": {"from": SUGGEST, "to": {"budget_id": "shop"}},
        "catch_up": {"from": "skip", "to": "once"},
    }


def test_an_update_that_changes_nothing_writes_nothing() -> None:
    made = make()
    same = definitions.update(
        "acme", "nightly", {"payload": SUGGEST}, actor="api", changed_by="key-ops"
    )
    assert same == made
    assert counts() == (1, 1)


def test_schedule_and_enabled_changes_move_the_next_run() -> None:
    make(schedule={"every": 60})
    hourly = definitions.update(
        "acme", "nightly", {"schedule": {"cron": "0 * * * *"}}, actor="api", changed_by="k"
    )
    assert hourly.next_run_at is not None
    assert hourly.next_run_at.minute == 0
    off = definitions.update("acme", "nightly", {"enabled": False}, actor="api", changed_by="k")
    assert off.next_run_at is None
    on = definitions.update("acme", "nightly", {"enabled": True}, actor="api", changed_by="k")
    assert on.next_run_at is not None
    assert on.next_run_at > database_now()
    unscheduled = definitions.update(
        "acme", "nightly", {"schedule": None}, actor="api", changed_by="k"
    )
    assert unscheduled.next_run_at is None
    assert unscheduled.version == 5


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"type": "sync"}, "type"),
        ({"name": "renamed"}, "name"),
        ({"payload": {"budget_id": ""}}, "payload.budget_id"),
        ({"schedule": {"cron": "0 25 * * *"}}, "schedule.cron"),
        ({"schedule": {"cron": "0 1 * * *", "timezone": "Nowhere"}}, "schedule.timezone"),
        ({"options": {"queue": ""}}, "options.queue"),
        ({"archived": "yes"}, "archived"),
        ({"enabled": None}, "enabled"),
    ],
)
def test_invalid_updates_name_the_field_and_write_nothing(
    changes: dict[str, Any], field: str
) -> None:
    made = make()
    with pytest.raises(InvalidPayload) as raised:
        definitions.update("acme", "nightly", changes, actor="api", changed_by="k")
    assert field in raised.value.fields, raised.value.fields
    assert definitions.get("acme", "nightly") == made
    assert counts() == (1, 1)


def test_tenants_see_and_change_only_their_own() -> None:
    make(tenant="acme")
    make("other", tenant="globex")
    assert definitions.get("globex", "nightly") is None
    assert [d.name for d in definitions.list_("globex")] == ["other"]
    with pytest.raises(LookupError):
        definitions.update("globex", "nightly", {"enabled": False}, actor="api", changed_by="k")
    with pytest.raises(DefinitionNotFound):
        definitions.update("globex", "nightly", {"enabled": False}, actor="api", changed_by="k")
    assert definitions.get("acme", "nightly").enabled  # type: ignore[union-attr]


def test_archive_hides_and_stops_but_keeps_the_definition() -> None:
    make("a")
    make("b")
    archived = definitions.update("acme", "b", {"archived": True}, actor="api", changed_by="k")
    assert archived.archived_at is not None
    assert archived.next_run_at is None
    assert [d.name for d in definitions.list_("acme")] == ["a"]
    assert [d.name for d in definitions.list_("acme", include_archived=True)] == ["a", "b"]
    back = definitions.update("acme", "b", {"archived": False}, actor="api", changed_by="k")
    assert back.archived_at is None
    assert back.next_run_at is not None
    assert [row["changes"] for row in definitions.changes_of(back.id)][1:] == [
        {"archived": {"from": False, "to": True}},
        {"archived": {"from": True, "to": False}},
    ]


def test_concurrent_updates_each_make_their_own_version() -> None:
    make()
    budgets = [f"b{n}" for n in range(6)]
    with ThreadPoolExecutor(3) as pool:
        list(
            pool.map(
                lambda b: definitions.update(
                    "acme", "nightly", {"payload": {"budget_id": b}}, actor="api", changed_by=b
                ),
                budgets,
            )
        )
    final = definitions.get("acme", "nightly")
    assert final is not None
    assert final.version == 1 + len(budgets)
    log = definitions.changes_of(final.id)
    assert [row["version"] for row in log] == list(range(1, len(budgets) + 2))
    assert sorted(row["changed_by"] for row in log[1:]) == budgets


# -- the schema holds it ------------------------------------------------------------------


def test_the_change_log_refuses_update_and_delete_on_postgresql(engine_kind: str) -> None:
    if engine_kind != "postgresql":
        pytest.skip("SQLite has no such trigger: the door is its only writer")
    made = make()
    for statement in (
        update(definition_changes).values(changed_by="mallory"),
        delete(definition_changes),
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine().begin() as connection:
            connection.execute(statement)
    assert definitions.changes_of(made.id)[0]["changed_by"] == "key-ops"


def test_a_definition_runs_point_at_cannot_be_deleted(engine_kind: str) -> None:
    made = make()
    job_id = uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(
            id=job_id,
            type="suggest",
            payload=SUGGEST,
            tenant="acme",
            trigger="manual",
            definition_id=made.id,
            definition_version=1,
        )
    )
    with db.engine().connect() as connection:
        # out of the way first (in this transaction, rolled back): the change log's own
        # key, so that the jobs' key is the one that refuses
        if engine_kind == "postgresql":
            connection.execute(text("ALTER TABLE job_definition_changes DISABLE TRIGGER USER"))
        connection.execute(text("DELETE FROM job_definition_changes"))
        gone = delete(definition_rows).where(definition_rows.c.id == made.id)
        with pytest.raises(IntegrityError) as raised:
            connection.execute(gone)
        connection.rollback()
    if engine_kind == "postgresql":
        assert "fk_jobs_definition_id_job_definitions" in str(raised.value)
    assert definitions.get("acme", "nightly") == made
    assert len(definitions.changes_of(made.id)) == 1


def test_each_firing_fits_once_in_the_ledger() -> None:
    made = make()
    firing = datetime(2026, 1, 1, 9, tzinfo=UTC)

    def firing_job(at: datetime | None = firing) -> bool:
        return ledger.record_queued(
            ledger.NewJob(
                id=uuid.uuid4(),
                type="suggest",
                payload=SUGGEST,
                tenant="acme",
                trigger="beat",
                definition_id=made.id,
                definition_version=1,
                scheduled_for=at,
            ),
            actor="beat",
        )

    assert firing_job()
    assert not firing_job()
    assert firing_job(firing + timedelta(minutes=1))  # another firing
    assert firing_job(None)
    assert firing_job(None)


# -- run ----------------------------------------------------------------------------------

#: The broker queue the runs here go to (no worker consumes it; emptied between tests).
QUEUE = "jobledger-test:definitions"


def jobs_of(definition_id: uuid.UUID) -> list[dict[str, Any]]:
    query = select(jobs).where(jobs.c.definition_id == definition_id).order_by(jobs.c.created_at)
    with db.engine().connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def messages(redis_client: redis.Redis) -> int:
    return waiting(redis_client, QUEUE)


def test_a_manual_run_makes_a_linked_job(redis_client: redis.Redis) -> None:
    made = make(options={"queue": QUEUE, "priority": 0})
    definitions.update(
        "acme", "nightly", {"payload": {"budget_id": "shop"}}, actor="api", changed_by="k"
    )

    job_id = definitions.run(
        "acme", "nightly", scheduled_for=None, trigger="manual", created_by="key-ops"
    )

    (job,) = jobs_of(made.id)
    assert job["id"] == job_id
    assert (job["type"], job["tenant"], job["trigger"], job["created_by"]) == (
        "suggest",
        "acme",
        "manual",
        "key-ops",
    )
    assert (job["definition_version"], job["scheduled_for"], job["queue"]) == (2, None, QUEUE)
    assert job["priority"] == 0  # the run option, on the users' scale
    assert job["payload"]["budget_id"] == "shop"  # the current version's payload
    assert messages(redis_client) == 1
    # a second run by hand is another job
    assert definitions.run("acme", "nightly", scheduled_for=None, trigger="manual", created_by="k")
    assert len(jobs_of(made.id)) == 2


def test_a_firing_runs_once(redis_client: redis.Redis) -> None:
    made = make(options={"queue": QUEUE})
    firing = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    first = definitions.run(
        "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    again = definitions.run(
        "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
    )

    assert first is not None
    assert again is None
    (job,) = jobs_of(made.id)
    assert job["id"] == first
    assert aware(job["scheduled_for"]) == firing
    assert messages(redis_client) == 1  # the second firing published nothing
    # the same moment in another zone is the same firing
    paris = firing.astimezone(ZoneInfo("Europe/Paris"))
    assert (
        definitions.run("acme", "nightly", scheduled_for=paris, trigger="beat", created_by="b")
        is None
    )


def test_a_scheduled_runs_message_expires_after_one_period_and_a_manual_one_never(
    redis_client: redis.Redis,
) -> None:
    make(options={"queue": QUEUE})  # every 60 s
    firing = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    definitions.run("acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat")
    definitions.run("acme", "nightly", scheduled_for=None, trigger="manual", created_by="k")

    sent = [  # every priority level's list of the queue
        json.loads(raw)["headers"]
        for key in redis_keys([QUEUE])
        for raw in redis_client.lrange(key, 0, -1)
    ]
    by_trigger = {bool(h["expires"]): h["expires"] for h in sent}
    assert set(by_trigger) == {True, False}  # the manual run's message carries none
    expires_at = datetime.fromisoformat(by_trigger[True])
    assert 50 <= (expires_at - datetime.now(UTC)).total_seconds() <= 60


def test_racing_firings_make_one_job(redis_client: redis.Redis) -> None:
    made = make(options={"queue": QUEUE})
    firing = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    start = threading.Barrier(6)

    def fire(_: int) -> uuid.UUID | None:
        start.wait()
        return definitions.run(
            "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
        )

    with ThreadPoolExecutor(6) as pool:
        made_jobs = list(pool.map(fire, range(6)))

    assert len([job for job in made_jobs if job is not None]) == 1
    assert len(jobs_of(made.id)) == 1
    assert messages(redis_client) == 1


def test_runs_refuse_what_cannot_run() -> None:
    make(options={"queue": QUEUE})
    with pytest.raises(DefinitionNotFound):
        definitions.run("globex", "nightly", scheduled_for=None, trigger="manual", created_by="k")
    definitions.update("acme", "nightly", {"enabled": False}, actor="api", changed_by="k")
    # disabled: not scheduled, but still runs by hand
    assert definitions.run("acme", "nightly", scheduled_for=None, trigger="manual", created_by="k")
    definitions.update("acme", "nightly", {"archived": True}, actor="api", changed_by="k")
    with pytest.raises(DefinitionArchived):
        definitions.run("acme", "nightly", scheduled_for=None, trigger="manual", created_by="k")


def test_a_scheduled_firing_of_a_definition_disabled_meanwhile_makes_nothing(
    redis_client: redis.Redis,
) -> None:
    made = make(options={"queue": QUEUE})
    definitions.update("acme", "nightly", {"enabled": False}, actor="api", changed_by="k")

    fired = definitions.run(
        "acme",
        "nightly",
        scheduled_for=datetime(2026, 1, 1, 9, tzinfo=UTC),
        trigger="beat",
        created_by="beat",
    )

    assert fired is None
    assert jobs_of(made.id) == []
    assert messages(redis_client) == 0


# -- due and advance ----------------------------------------------------------------------


def back_date(name: str, next_run_at: datetime | None, tenant: str = "acme") -> None:
    with db.engine().begin() as connection:
        connection.execute(
            update(definition_rows)
            .where(definition_rows.c.tenant == tenant, definition_rows.c.name == name)
            .values(next_run_at=next_run_at)
        )


def test_due_lists_only_enabled_scheduled_live_definitions_whose_time_came() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    for name in ("due", "later", "off", "gone", "by-hand"):
        make(name, schedule={"every": 60})
    make("by-hand-2", schedule=None)
    back_date("due", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    back_date("later", datetime(2026, 3, 1, 12, 1, tzinfo=UTC))
    for name in ("off", "gone"):
        back_date(name, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    definitions.update("acme", "off", {"enabled": False}, actor="api", changed_by="k")
    definitions.update("acme", "gone", {"archived": True}, actor="api", changed_by="k")
    back_date("off", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))  # even with a stale time
    back_date("gone", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))

    found = definitions.due(now)

    # listed with no firing to make: no beat watched it fall due (catch-up skip)
    assert [(d.name, firings) for d, firings in found] == [("due", [])]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("skip", []),  # none of the missed firings runs
        ("once", [datetime(2026, 3, 1, 12, tzinfo=UTC)]),  # one run stands for all of them
    ],
)
def test_missed_interval_firings_follow_the_catch_up_rule(
    catch_up: str, expected: list[datetime]
) -> None:
    make(schedule={"every": 60}, catch_up=catch_up)
    back_date("nightly", datetime(2026, 3, 1, 10, 0, tzinfo=UTC))  # two hours unfired

    ((_, firings),) = definitions.due(datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC))

    assert firings == expected


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [
        ("skip", []),
        ("once", [datetime(2026, 3, 30, 7, tzinfo=UTC)]),
    ],
)
def test_missed_cron_firings_follow_the_catch_up_rule_in_their_zone(
    catch_up: str, expected: list[datetime]
) -> None:
    # 09:00 Paris on weekdays; the beat was away from Wednesday to Monday noon, across
    # the change to summer time (Sunday 2026-03-29)
    make(schedule={"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}, catch_up=catch_up)
    back_date("nightly", datetime(2026, 3, 25, 8, tzinfo=UTC))

    ((_, firings),) = definitions.due(datetime(2026, 3, 30, 10, tzinfo=UTC))

    assert firings == expected


def test_skip_passes_over_the_missed_firings_to_the_first_one_after_now() -> None:
    made = make(schedule={"every": 60}, catch_up="skip")
    back_date("nightly", datetime(2026, 3, 1, 10, 0, tzinfo=UTC))  # two hours unfired
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
    ((definition, firings),) = definitions.due(now)
    assert firings == []

    assert definitions.pass_over(definition, now)

    moved = definitions.get("acme", "nightly")
    assert moved is not None
    assert moved.next_run_at == datetime(2026, 3, 1, 12, 1, tzinfo=UTC)
    assert definitions.due(now) == []
    assert jobs_of(made.id) == []


def test_advance_moves_a_definition_past_a_firing_once() -> None:
    made = make(schedule={"every": 60})
    firing = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    back_date("nightly", firing)
    following = firing + timedelta(minutes=1)

    assert definitions.advance(made.id, firing, following)
    assert not definitions.advance(made.id, firing, following)  # a second beat
    moved = definitions.get("acme", "nightly")
    assert moved is not None
    assert (moved.last_fired_for, moved.next_run_at) == (firing, following)
    assert definitions.due(firing + timedelta(seconds=30)) == []
    # an older firing cannot move it back
    assert not definitions.advance(made.id, firing - timedelta(minutes=1), firing)
    assert definitions.get("acme", "nightly") == moved


def test_advance_leaves_an_edit_made_meanwhile() -> None:
    made = make(schedule={"every": 60})
    firing = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    back_date("nightly", firing)
    # an active beat that looked a second before the firing
    ((_, firings),) = definitions.due(firing, watched_since=firing - timedelta(seconds=1))
    # an operator disables it while the beat fires
    definitions.update("acme", "nightly", {"enabled": False}, actor="api", changed_by="k")

    assert not definitions.advance(made.id, firings[-1], firing + timedelta(minutes=1))
    stopped = definitions.get("acme", "nightly")
    assert stopped is not None
    assert stopped.next_run_at is None
    # or changes the schedule: its new next firing stays
    definitions.update("acme", "nightly", {"enabled": True}, actor="api", changed_by="k")
    edited = definitions.get("acme", "nightly")
    assert edited is not None
    assert not definitions.advance(made.id, firing, firing + timedelta(minutes=1))
    assert definitions.get("acme", "nightly") == edited


def test_due_then_run_then_advance_fires_each_firing_once(redis_client: redis.Redis) -> None:
    """What a beat tick does, twice for the same moment (two beats): one job."""
    made = make(schedule={"every": 60}, options={"queue": QUEUE})
    firing = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    back_date("nightly", firing)
    now = firing + timedelta(seconds=5)

    def tick() -> None:  # of an active beat that looked a second before the firing
        for definition, firings in definitions.due(
            now, watched_since=firing - timedelta(seconds=1)
        ):
            for moment in firings:
                definitions.run(
                    definition.tenant,
                    definition.name,
                    scheduled_for=moment,
                    trigger="beat",
                    created_by="beat",
                )
            definitions.advance(
                definition.id,
                firings[-1],
                schedules.next_after(definition.schedule or {}, firings[-1]),
            )

    tick()
    back_date("nightly", firing)  # a second beat that read the definition before the advance
    tick()

    (job,) = jobs_of(made.id)
    assert aware(job["scheduled_for"]) == firing
    assert messages(redis_client) == 1


def test_payloads_are_validated_for_the_definitions_tenant() -> None:
    # pg_bank is configured for tenant acme only (tests/conftest.py)
    payload = {"budget_id": "household", "source": "database://pg_bank/bank_tx"}
    make("acme-sync", tenant="acme", type="sync", payload=payload)
    with pytest.raises(InvalidPayload) as raised:
        make("globex-sync", tenant="globex", type="sync", payload=payload)
    assert any(field.startswith("payload.source") for field in raised.value.fields)
    make("globex-sync", tenant="globex", type="sync", payload={**payload, "source": "bank.csv"})
    with pytest.raises(InvalidPayload):
        definitions.update(
            "globex", "globex-sync", {"payload": payload}, actor="api", changed_by="k"
        )
    assert counts() == (2, 2)


def test_a_chained_job_fires_once_with_its_steps(redis_client: redis.Redis) -> None:
    made = make(
        "per-budget",
        type="sync_and_suggest",
        payload={"budget_id": "household", "source": "bank.csv"},
        options={"queue": QUEUE},
    )
    firing = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    first = definitions.run(
        "acme", "per-budget", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    again = definitions.run(
        "acme", "per-budget", scheduled_for=firing, trigger="beat", created_by="beat"
    )

    assert first is not None
    assert again is None
    (job,) = jobs_of(made.id)
    assert job["id"] == first
    with db.engine().connect() as connection:
        positions = connection.execute(
            select(step_rows.c.position).where(step_rows.c.job_id == first)
        ).scalars()
        assert sorted(positions) == [1, 2]
    assert messages(redis_client) == 1  # the chain's first step, once


def test_a_schedule_that_no_longer_parses_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("broken", "fine"):
        make(name, schedule={"every": 60})
        back_date(name, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    with db.engine().begin() as connection:  # as if its time zone left the tz data
        connection.execute(
            update(definition_rows)
            .where(definition_rows.c.name == "broken")
            .values(schedule={"cron": "0 * * * *", "timezone": "Gone/Away"})
        )

    found = definitions.due(datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC))

    assert [d.name for d, _ in found] == ["fine"]
    assert "'broken'" in caplog.text
    assert "schedule.timezone" in caplog.text


RACE = """
import sys
from datetime import datetime
from app.ledger import definitions
sys.stdin.readline()  # all started: go
made = definitions.run(
    "acme", "nightly", scheduled_for=datetime.fromisoformat(sys.argv[1]),
    trigger="beat", created_by="beat",
)
print("made" if made else "none")
"""


def test_racing_processes_make_one_job_per_firing(
    engine_kind: str, redis_client: redis.Redis
) -> None:
    """Separate processes (as separate beats are), released together on each firing."""
    made = make(options={"queue": QUEUE})
    env = {**os.environ, "JOBLEDGER_DATABASE_URL": settings().database_url}
    for minute in range(3):
        firing = datetime(2026, 1, 1, 9, minute, tzinfo=UTC)
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACE, firing.isoformat()],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(4)
        ]
        time.sleep(2)  # imported and waiting on stdin
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("\n")
            racer.stdin.flush()
        outcomes = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
        assert outcomes == ["made", "none", "none", "none"], (engine_kind, outcomes)
    firings = sorted(aware(job["scheduled_for"]).minute for job in jobs_of(made.id))
    assert firings == [0, 1, 2]
    assert messages(redis_client) == 3


@pytest.mark.parametrize(
    "source",
    [
        "https://user:hunter2hunter2@files.example.com/bank.csv",
        "https://files.example.com/bank.csv?X-Amz-Signature=abcdef0123456789",
    ],
)
def test_payloads_holding_secrets_are_refused_not_stored(source: str) -> None:
    """Secrets never enter the ledger: a definition's payload is stored as given."""
    with pytest.raises(InvalidPayload) as raised:
        make(type="sync", payload={"budget_id": "household", "source": source})
    assert "secret" in raised.value.fields["payload.source"]
    assert counts() == (0, 0)
    make(type="sync", payload={"budget_id": "household", "source": "bank.csv"})
    with pytest.raises(InvalidPayload):
        definitions.update(
            "acme",
            "nightly",
            {"payload": {"budget_id": "household", "source": source}},
            actor="api",
            changed_by="k",
        )
    assert counts() == (1, 1)


def test_the_last_run_shown_with_a_definition_has_utc_timestamps(
    redis_client: redis.Redis,
) -> None:
    """The definition document's ``last_run`` says its times in UTC with their offset, as
    the definition's own (SQLite reads timestamps back without one)."""
    from app.ledger.reads import definitions as definition_reads

    made = make(options={"queue": QUEUE})
    firing = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert definitions.run("acme", "nightly", scheduled_for=firing, trigger="beat", created_by="b")
    current = definitions.get("acme", "nightly")
    assert current is not None

    shown = definition_reads.documents([current])[0]["last_run"]

    assert shown is not None
    assert datetime.fromisoformat(shown["scheduled_for"]) == firing
    assert datetime.fromisoformat(shown["created_at"]).utcoffset() == timedelta(0)
    assert made.id == current.id
