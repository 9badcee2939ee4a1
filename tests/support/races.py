"""Stopping a run of the ledger at a known place, with PostgreSQL's own row locks: a test
holds one job's row, and a run that reaches that job waits there (its guarded transition
is an UPDATE of the row), so the test can kill the run or change other jobs meanwhile.
No hook in the product's code is needed for it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import text

from app import db

T = TypeVar("T")


def at_once(call: Callable[[], T], count: int, timeout: float = 60) -> list[T | BaseException]:
    """``call`` from ``count`` threads released together: each one's result or error (in
    the order they ended). Fails when one has not ended within ``timeout``."""
    barrier = threading.Barrier(count)
    ended: list[T | BaseException] = []

    def one() -> None:
        try:
            barrier.wait(timeout)
            ended.append(call())
        except BaseException as error:  # returned to the test, which asserts on it
            ended.append(error)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert len(ended) == count, f"{count - len(ended)} of {count} calls still running"
    return ended


def jobs_in_order(queue: str) -> list[str]:
    """The ids of a queue's jobs, oldest first (the order a bulk operation takes them in)."""
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT id FROM jobs WHERE queue = :queue ORDER BY created_at, id"),
            {"queue": queue},
        )
        return [str(row[0]) for row in rows]


@contextmanager
def holding(job_id: uuid.UUID | str) -> Iterator[None]:
    """Hold the job's row (``SELECT … FOR UPDATE``) until the block ends: any transition
    of that job waits until then."""
    with db.engine().connect() as connection:
        connection.execute(
            text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": str(job_id)}
        )
        try:
            yield
        finally:
            connection.rollback()


def wait_for_a_waiter(timeout: float = 30) -> None:
    """Until a session of this database waits on a lock (the run reached the held row)."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine().connect() as connection:
            if connection.execute(waiting).scalar_one():
                return
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"no session waited on a lock within {timeout}s")


def acted_on(ids: list[str]) -> list[str]:
    """Those of ``ids`` with an event of a bulk operation, in their order."""
    with db.engine().connect() as connection:
        acted = {
            str(row[0])
            for row in connection.execute(
                text("SELECT job_id FROM job_events WHERE operation_id IS NOT NULL")
            )
        }
    return [job_id for job_id in ids if job_id in acted]


def wait_for_acted(ids: list[str], count: int, timeout: float = 30) -> list[str]:
    """Until ``count`` of ``ids`` have an event of a bulk operation; those ids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acted = acted_on(ids)
        if len(acted) >= count:
            return acted
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"{acted_on(ids)} acted on within {timeout}s, wanted {count}")
