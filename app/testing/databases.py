"""Throwaway ledger databases on a PostgreSQL server: made, migrated to head, emptied
between tests, dropped. ``admin_url`` is a URL of a database to connect to while making
or dropping another one (typically ``…/postgres``); the user needs ``CREATEDB``."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text

#: Every table a job writes to (TRUNCATE empties them together).
LEDGER_TABLES = (
    "jobs, job_steps, job_events, job_logs, job_files, run_name_counters, job_daily_rollups, "
    "job_status_counts, job_status_totals, dashboard_sessions, job_definitions, "
    "job_definition_changes, beat_leases, job_hourly_rollups, job_trend_totals, "
    "job_operations"
)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def recreate_database(admin_url: str, name: str) -> str:
    """Drop database ``name`` if it exists (closing its connections) and create it empty;
    its URL."""
    _administer(
        admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing its connections."""
    _administer(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrated_ledger(admin_url: str, name: str) -> str:
    """A fresh database ``name`` migrated to head (the only way a ledger is made); its URL."""
    from app.migrate import upgrade

    url = recreate_database(admin_url, name)
    upgrade(database_url=url)
    return url


def empty_ledger(engine: Engine) -> None:
    """Delete every job and its records, and start the settled counts and trends over."""
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {LEDGER_TABLES} RESTART IDENTITY CASCADE"))
        # TRUNCATE fires no delete trigger: nothing is settled, the counts start over
        connection.execute(
            text("UPDATE job_status_counts_watermark SET settled_before = '1970-01-01 00:00Z'")
        )
        connection.execute(
            text("UPDATE job_trend_watermark SET settled_before = NULL, version = 0")
        )
        connection.execute(text("UPDATE ledger_counters SET value = 0"))


def _administer(admin_url: str, *statements: str) -> None:
    from app.config import normalize_database_url

    admin = create_engine(normalize_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        admin.dispose()
