"""A Celery pool process keeps its hot-path connection checked out between statements
(app.db.hold_hot_connection): one server connection, no pool checkout and checkin per
statement, and still given back on an error, after HOLD_SECONDS, and never shared with
another thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from app import db
from tests.integration.test_prepared import run_one_job


@pytest.fixture
def holding() -> Iterator[list[str]]:
    """This thread holds its hot connection; yields the pool's checkins as they happen."""
    db.reset()
    checkins: list[str] = []
    pool = db.autocommit_engine().pool
    event.listen(pool, "checkin", lambda *_: checkins.append("checkin"))
    db.hold_hot_connection()
    try:
        yield checkins
    finally:
        db.release_hot_connection()
        db.reset()


def backend_pid() -> int:
    def work(cursor: Any, _info: dict[str, Any]) -> int:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])

    return db.on_driver_cursor(work, "backend pid")


def test_the_holding_thread_keeps_one_connection_across_statements(
    holding: list[str],
) -> None:
    first = backend_pid()
    run_one_job()
    run_one_job()
    assert backend_pid() == first
    assert holding == []  # never given back to the pool between statements
    assert db.autocommit_engine().pool.checkedout() == 1


def test_without_holding_each_statement_gives_the_connection_back() -> None:
    db.reset()
    checkins: list[str] = []
    event.listen(db.autocommit_engine().pool, "checkin", lambda *_: checkins.append("checkin"))
    run_one_job()
    assert len(checkins) == 3  # queued, running, succeeded: one checkout each
    assert db.autocommit_engine().pool.checkedout() == 0


def test_another_thread_takes_a_connection_of_its_own(holding: list[str]) -> None:
    held = backend_pid()
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(backend_pid()))
    thread.start()
    thread.join(10)
    assert len(other) == 1
    assert other[0] != held
    assert holding == ["checkin"]  # the other thread's, given back after its statement
    assert backend_pid() == held


def test_an_error_gives_the_held_connection_back(holding: list[str]) -> None:
    backend_pid()

    def fails(cursor: Any, _info: dict[str, Any]) -> None:
        cursor.execute("SELECT 1 / 0")

    with pytest.raises(Exception, match="division by zero"):
        db.on_driver_cursor(fails, "a failing statement")
    assert holding == ["checkin"]
    run_one_job()  # the next statement takes a connection again, and holds it
    assert db.autocommit_engine().pool.checkedout() == 1


def test_a_killed_held_connection_is_replaced_and_the_write_retried(
    holding: list[str],
) -> None:
    held = backend_pid()
    with db.engine().begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": held}).scalar()
    run_one_job()  # the first write fails on the dead connection and is retried
    assert backend_pid() != held
    assert db.autocommit_engine().pool.checkedout() == 1


def test_the_held_connection_goes_back_to_the_pool_after_hold_seconds(
    holding: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend_pid()
    monkeypatch.setattr(db, "HOLD_SECONDS", 0.0)
    backend_pid()
    backend_pid()
    assert holding == ["checkin", "checkin"]  # given back, then taken again, each time
