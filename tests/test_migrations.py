"""Migrations are the only way the schema is made: head equals the models, and
up -> down -> up works on PostgreSQL and on SQLite (the embedded default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.migrate import downgrade, upgrade
from models import Base
from tests.conftest import ADMIN_URL, recreate_database

SCRATCH_DB = "jobledger_test_migrations"


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
