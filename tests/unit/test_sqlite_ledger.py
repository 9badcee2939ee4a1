"""The SQLite ledger's own set-up (app/db.py): its clock and what a lock says. No server."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

import app.db  # noqa: F401  (SQLite's now() with sub-seconds)
from app.exceptions import LedgerUnavailable


def test_now_on_sqlite_has_sub_second_precision_in_sqlalchemys_storage_format() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as connection:
        first = connection.execute(sa.select(sa.func.now())).scalar_one()
        time.sleep(0.05)  # a gap far below one second, yet visible to the clock
        second = connection.execute(sa.select(sa.func.now())).scalar_one()
        stored = connection.execute(sa.select(sa.cast(sa.func.now(), sa.String))).scalar_one()
    assert isinstance(first, datetime)
    assert second > first
    assert (second - first).total_seconds() < 1
    # the text SQLAlchemy writes a datetime as, so both compare as text in order
    assert datetime.strptime(stored, "%Y-%m-%d %H:%M:%S.%f")


def test_a_server_default_of_now_keeps_sub_seconds_on_sqlite() -> None:
    table = sa.Table(
        "stamped",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    engine = sa.create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        for number in range(3):
            connection.execute(table.insert().values(id=number))
            time.sleep(0.01)  # three inserts within one second
        stamps = connection.execute(sa.select(table.c.at).order_by(table.c.id)).scalars().all()
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3


def test_a_locked_sqlite_ledger_is_reported_as_a_lock_not_as_a_bad_url(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO t VALUES (2)"))
    except sa.exc.OperationalError as error:
        message = str(LedgerUnavailable("progress of job 1", error))
    finally:
        holder.close()
    assert "locked by another connection's write transaction" in message
    assert "is up and migrated" not in message


def test_other_write_failures_still_point_at_the_url_and_the_migration() -> None:
    error = sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("no such table: jobs"))
    message = str(LedgerUnavailable("progress of job 1", error))
    assert "JOBLEDGER_DATABASE_URL is up and migrated" in message
