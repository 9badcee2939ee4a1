"""The database sources the tests configure (tests/conftest.py names them in
``JOBLEDGER_DATABASE_SOURCES``): a SQLite file and a PostgreSQL database beside the
ledger, made here with plain SQL."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import create_engine, text

from app.config import normalize_database_url
from tests.conftest import SOURCE_DATABASE, SOURCE_DATABASE_URL, SOURCE_DIR
from tests.support.services import recreate_database

BANK_COLUMNS = (
    "id TEXT PRIMARY KEY, date TEXT, payee TEXT, amount REAL, category TEXT, updated_at TEXT"
)


def sqlite_bank(rows: list[tuple[Any, ...]]) -> sqlite3.Connection:
    """The ``bank`` source's file, made anew with ``rows`` in ``bank_tx``; the returned
    connection lets a test change it between runs."""
    SOURCE_DIR.mkdir(parents=True, exist_ok=True)
    path = SOURCE_DIR / "bank.db"
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(f"CREATE TABLE bank_tx ({BANK_COLUMNS})")
    connection.executemany("INSERT INTO bank_tx VALUES (?, ?, ?, ?, ?, ?)", rows)
    return connection


def postgres_bank(rows: list[tuple[Any, ...]]) -> None:
    """The ``pg_bank`` source database, made anew: ``bank_tx`` with ``rows``; a table
    ``audit``; ``sneaky_tx``, a view whose every row INSERTs into ``audit`` (a write
    attempted from inside the read); ``slow_tx``, a view that sleeps 30 s per row."""
    recreate_database(SOURCE_DATABASE)
    engine = create_engine(normalize_database_url(SOURCE_DATABASE_URL))
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE bank_tx ({BANK_COLUMNS})"))
        connection.execute(text("CREATE TABLE audit (note TEXT)"))
        connection.execute(
            text(
                "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql VOLATILE AS "
                "$$ INSERT INTO audit VALUES ('written from a source read'); SELECT 1 $$"
            )
        )
        connection.execute(text("CREATE VIEW sneaky_tx AS SELECT *, sneaky() AS s FROM bank_tx"))
        connection.execute(
            text("CREATE VIEW slow_tx AS SELECT *, pg_sleep(30)::text AS s FROM bank_tx")
        )
        for row in rows:
            connection.execute(
                text("INSERT INTO bank_tx VALUES (:a, :b, :c, :d, :e, :f)"),
                dict(zip("abcdef", row, strict=True)),
            )
    engine.dispose()


def postgres_source(sql: str) -> list[Any]:
    """Rows of a query on the ``pg_bank`` source database."""
    engine = create_engine(normalize_database_url(SOURCE_DATABASE_URL))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql)).all())
    finally:
        engine.dispose()
