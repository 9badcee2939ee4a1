"""Job definitions through their door (:mod:`app.ledger.definitions`), on PostgreSQL and
on SQLite: create, update, the append-only change log, validation that writes nothing,
names per tenant, archive, and never deleted while runs point at a definition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app import db
from app.config import settings
from app.exceptions import DefinitionExists, DefinitionNotFound, InvalidPayload
from app.ledger import definitions, engines
from app.ledger import transitions as ledger
from app.migrate import upgrade
from models.tables import definition_changes
from models.tables import definitions as definition_rows

SUGGEST = {"budget_id": "household"}


@pytest.fixture(params=["postgresql", "sqlite"], autouse=True)
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs once per engine: the session's PostgreSQL ledger, then a fresh SQLite
    ledger migrated to head in ``tmp_path``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        monkeypatch.setenv("JOBLEDGER_DATABASE_URL", url)
        settings.cache_clear()
        db.reset()
        upgrade(database_url=url)
        assert engines.current().dialect == "sqlite"
        yield "sqlite"
        db.reset()
        monkeypatch.undo()
        settings.cache_clear()
    else:
        assert engines.current().dialect == "postgresql"
        yield "postgresql"


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
    from concurrent.futures import ThreadPoolExecutor

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
