"""Migrations are the only way the schema is made: head equals the models, and
up -> down -> up works on PostgreSQL and on SQLite (the embedded default)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.migrate import downgrade, upgrade
from models import Base
from tests.conftest import ADMIN_URL, TEST_DB
from tests.support.services import recreate_database

#: Named after the run's own database, so parallel runs never drop each other's.
SCRATCH_DB = f"{TEST_DB}_migrations"


@pytest.fixture
def postgres_url() -> str:
    recreate_database(SCRATCH_DB)
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{SCRATCH_DB}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


def schema_differences(url: str) -> list[object]:
    from app.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    return differences


def table_names(url: str) -> set[str]:
    from app.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def test_head_on_postgresql_equals_the_models(postgres_url: str) -> None:
    upgrade(database_url=postgres_url)
    assert schema_differences(postgres_url) == []


def test_head_on_sqlite_equals_the_models(sqlite_url: str) -> None:
    upgrade(database_url=sqlite_url)
    assert schema_differences(sqlite_url) == []


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_up_down_up(url_fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade(database_url=url)
    assert {"jobs", "job_steps", "job_events", "job_logs", "job_files"} <= table_names(url)
    downgrade("base", database_url=url)
    assert table_names(url) <= {"alembic_version"}
    upgrade(database_url=url)
    assert "jobs" in table_names(url)


# -- 0005: tenant on every domain table ---------------------------------------------------

JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("type", sa.String()),
    sa.column("status", sa.String()),
    sa.column("tenant", sa.String()),
    sa.column("payload", sa.JSON()),
)
DATASETS = sa.table(
    "datasets", sa.column("id", sa.Integer()), sa.column("tenant"), sa.column("name")
)
DATASET_ROWS = sa.table(
    "dataset_rows",
    sa.column("id", sa.Integer()),
    sa.column("dataset_id", sa.Integer()),
    sa.column("row_key"),
    sa.column("data", sa.JSON()),
    sa.column("job_id", sa.Uuid()),
)
TRANSACTIONS = sa.table(
    "transactions",
    sa.column("id", sa.Integer()),
    sa.column("budget_id"),
    sa.column("external_id"),
    sa.column("booked_on", sa.Date()),
    sa.column("payee"),
    sa.column("payee_normalized"),
    sa.column("amount", sa.Numeric()),
    sa.column("job_id", sa.Uuid()),
)
CURSORS = sa.table(
    "sync_cursors",
    sa.column("budget_id"),
    sa.column("source_key"),
    sa.column("cursor", sa.JSON()),
    sa.column("job_id", sa.Uuid()),
)
SUGGESTIONS = sa.table(
    "suggestions",
    sa.column("id", sa.Integer()),
    sa.column("budget_id"),
    sa.column("transaction_id", sa.Integer()),
    sa.column("category"),
    sa.column("confidence", sa.Float()),
    sa.column("evidence", sa.Integer()),
    sa.column("job_id", sa.Uuid()),
)


def _run(url: str, *statements: Any) -> list[dict[str, Any]]:
    """Execute ``statements`` in one transaction; the rows of the last one, if any."""
    from app.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    with engine.begin() as connection:
        for statement in statements:
            result = connection.execute(statement)
        found = [dict(row) for row in result.mappings()] if result.returns_rows else []
    engine.dispose()
    return found


def _old_shape_rows(url: str) -> dict[str, uuid.UUID]:
    """Rows as revision 0004 held them: acme's sync job wrote budget ``household`` (with a
    cursor and a suggestion), a purged job wrote budget ``old``, and a dataset of globex."""
    acme_sync, acme_suggest, purged = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _run(
        url,
        sa.insert(JOBS).values(
            [
                {
                    "id": acme_sync,
                    "name": "a1",
                    "type": "sync",
                    "status": "succeeded",
                    "tenant": "acme",
                    "payload": {},
                },
                {
                    "id": acme_suggest,
                    "name": "a2",
                    "type": "suggest",
                    "status": "succeeded",
                    "tenant": "acme",
                    "payload": {},
                },
            ]
        ),
        sa.insert(DATASETS).values(tenant="globex", name="sales"),
        sa.insert(DATASET_ROWS).values(
            dataset_id=sa.select(DATASETS.c.id).scalar_subquery(),
            row_key="k1",
            data={"k": "k1"},
            job_id=purged,
        ),
        sa.insert(TRANSACTIONS).values(
            [
                {
                    "budget_id": "household",
                    "external_id": "t1",
                    "booked_on": date(2024, 1, 2),
                    "payee": "Cafe",
                    "payee_normalized": "cafe",
                    "amount": -3,
                    "job_id": acme_sync,
                },
                {
                    "budget_id": "old",
                    "external_id": "t1",
                    "booked_on": date(2024, 1, 2),
                    "payee": "Cafe",
                    "payee_normalized": "cafe",
                    "amount": -3,
                    "job_id": purged,
                },
            ]
        ),
        sa.insert(CURSORS).values(
            [
                {
                    "budget_id": "household",
                    "source_key": "file:///bank.csv",
                    "cursor": {"field": "updated_at", "value": 1},
                    "job_id": acme_sync,
                },
                {
                    "budget_id": "old",
                    "source_key": "file:///bank.csv",
                    "cursor": {"field": "updated_at", "value": 1},
                    "job_id": None,
                },
            ]
        ),
        # written by a job of another tenant (the leak this revision closes): it follows
        # its transaction
        sa.insert(SUGGESTIONS).values(
            budget_id="household",
            transaction_id=sa.select(TRANSACTIONS.c.id)
            .where(TRANSACTIONS.c.budget_id == "household")
            .scalar_subquery(),
            category="Coffee",
            confidence=1.0,
            evidence=2,
            job_id=purged,
        ),
    )
    return {"acme_sync": acme_sync, "acme_suggest": acme_suggest}


def _tenants(url: str, table: str, key: str) -> dict[Any, str]:
    rows = _run(url, sa.text(f"SELECT {key} AS k, tenant FROM {table}"))
    return {row["k"]: row["tenant"] for row in rows}


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_0005_moves_domain_rows_to_their_writers_tenant_or_default(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade("0004", database_url=url)
    _old_shape_rows(url)

    upgrade("0005", database_url=url)

    assert _tenants(url, "transactions", "budget_id") == {"household": "acme", "old": "default"}
    assert _tenants(url, "sync_cursors", "budget_id") == {"household": "acme", "old": "default"}
    assert _tenants(url, "suggestions", "budget_id") == {"household": "acme"}
    assert _tenants(url, "dataset_rows", "row_key") == {"k1": "globex"}
    # the same budget and external id now fit once per tenant
    _run(
        url,
        sa.text(
            "INSERT INTO transactions (tenant, budget_id, external_id, booked_on, payee, "
            "payee_normalized, amount) VALUES ('globex', 'household', 't1', '2024-01-02', "
            "'Cafe', 'cafe', -3)"
        ),
    )
    with pytest.raises(sa.exc.IntegrityError):
        _run(url, sa.text("UPDATE transactions SET tenant = NULL WHERE tenant = 'globex'"))


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_0005_downgrade_drops_the_tenant_and_keeps_the_rows(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade("0004", database_url=url)
    _old_shape_rows(url)
    upgrade("0005", database_url=url)

    downgrade("0004", database_url=url)

    for table in ("dataset_rows", "transactions", "sync_cursors", "suggestions"):
        assert "tenant" not in {c["name"] for c in _columns(url, table)}, table
    assert len(_run(url, sa.text("SELECT id FROM transactions"))) == 2
    assert len(_run(url, sa.text("SELECT id FROM suggestions"))) == 1
    upgrade(database_url=url)
    assert schema_differences(url) == []


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_0005_downgrade_refuses_rows_of_two_tenants_the_old_key_cannot_hold(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade("0005", database_url=url)
    for tenant in ("acme", "globex"):
        _run(
            url,
            sa.text(
                "INSERT INTO transactions (tenant, budget_id, external_id, booked_on, payee, "
                f"payee_normalized, amount) VALUES ('{tenant}', 'household', 't1', "
                "'2024-01-02', 'Cafe', 'cafe', -3)"
            ),
        )

    with pytest.raises(RuntimeError, match="transactions has rows of several tenants"):
        downgrade("0004", database_url=url)

    assert _tenants(url, "transactions", "tenant") == {"acme": "acme", "globex": "globex"}


def _columns(url: str, table: str) -> list[Any]:
    from app.config import normalize_database_url

    engine = create_engine(normalize_database_url(url))
    columns = inspect(engine).get_columns(table)
    engine.dispose()
    return list(columns)


# -- 0009: job definitions, runs linked to them, trigger manual ---------------------------


def _job(url: str, trigger: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    _run(
        url,
        sa.text(
            "INSERT INTO jobs (id, name, type, status, payload, trigger) "
            "VALUES (:id, :name, 'suggest', 'queued', '{}', :trigger)"
        ).bindparams(
            sa.bindparam("id", job_id, type_=sa.Uuid()), name=job_id.hex[:20], trigger=trigger
        ),
    )
    return job_id


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_0009_manual_trigger_up_and_down(url_fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade("0008", database_url=url)
    _job(url, "api")
    with pytest.raises(sa.exc.IntegrityError):
        _job(url, "manual")

    upgrade("0009", database_url=url)
    assert {"job_definitions", "job_definition_changes", "beat_leases"} <= table_names(url)
    manual = _job(url, "manual")
    with pytest.raises(sa.exc.IntegrityError):
        _job(url, "bogus")
    with pytest.raises(RuntimeError, match="manual"):
        downgrade("0008", database_url=url)
    _run(url, sa.text("DELETE FROM jobs WHERE trigger = 'manual'"))
    assert manual

    downgrade("0008", database_url=url)
    assert not {"job_definitions", "beat_leases"} & table_names(url)
    columns = {c["name"] for c in _columns(url, "jobs")}
    assert not {"definition_id", "definition_version", "scheduled_for"} & columns
    with pytest.raises(sa.exc.IntegrityError):
        _job(url, "manual")
    assert len(_run(url, sa.text("SELECT id FROM jobs"))) == 1

    upgrade(database_url=url)
    assert schema_differences(url) == []


@pytest.mark.parametrize("url_fixture", ["postgres_url", "sqlite_url"])
def test_0009_each_firing_once_and_definitions_kept(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(url_fixture)
    upgrade(database_url=url)
    definition = uuid.uuid4()
    _run(
        url,
        sa.text(
            "INSERT INTO job_definitions (id, tenant, name, type, payload) "
            "VALUES (:id, 'acme', 'nightly', 'suggest', '{}')"
        ).bindparams(sa.bindparam("id", definition, type_=sa.Uuid())),
    )

    def fire(job_id: uuid.UUID) -> sa.TextClause:
        return sa.text(
            "UPDATE jobs SET definition_id = :d, scheduled_for = '2026-01-01 09:00:00' "
            "WHERE id = :j"
        ).bindparams(
            sa.bindparam("d", definition, type_=sa.Uuid()),
            sa.bindparam("j", job_id, type_=sa.Uuid()),
        )

    first, second = _job(url, "beat"), _job(url, "beat")
    _run(url, fire(first))
    with pytest.raises(sa.exc.IntegrityError):  # one job per (definition, scheduled_for)
        _run(url, fire(second))
    if url.startswith("sqlite"):
        pragma = sa.text("PRAGMA foreign_keys = ON")  # as the app's SQLite engine has it
        with pytest.raises(sa.exc.IntegrityError):
            _run(url, pragma, sa.text("DELETE FROM job_definitions"))
    else:
        with pytest.raises(sa.exc.IntegrityError, match="fk_jobs_definition_id"):
            _run(url, sa.text("DELETE FROM job_definitions"))
