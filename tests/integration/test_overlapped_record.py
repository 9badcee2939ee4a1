"""A job recorded while its message is built (app.ledger.engines.overlapped): the same row
and event as ``record_queued``, on a non-blocking connection of the process's own that
falls back to the pool when it is lost, busy, or inherited through fork."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.ledger import transitions as ledger
from app.ledger.engines.overlapped import OVERLAPPED
from tests.support import ledger as read


def _new_job() -> ledger.NewJob:
    job_id = uuid.uuid4()
    return ledger.NewJob(
        id=job_id, type="example.echo", payload={"value": 1}, celery_task_id=str(job_id)
    )


def _record(job: ledger.NewJob, meanwhile: Any = None) -> tuple[bool, list[str]]:
    ran: list[str] = []

    def note() -> None:
        ran.append(str(job.id))
        if meanwhile is not None:
            meanwhile()

    return ledger.record_queued_meanwhile(job, actor="producer", meanwhile=note), ran


def _async_backend_pid() -> int | None:
    connection = OVERLAPPED._connection
    return None if connection is None else int(connection.info.backend_pid)


def test_a_job_is_recorded_as_record_queued_records_it_and_meanwhile_runs() -> None:
    job = _new_job()
    created, ran = _record(job)
    assert created
    assert ran == [str(job.id)]
    row = read.job(job.id)
    assert row is not None
    assert row["status"] == "queued"
    assert [(e["to_status"], e["actor"]) for e in read.events(job.id)] == [("queued", "producer")]


def test_an_id_recorded_before_is_not_recorded_again_and_meanwhile_still_runs() -> None:
    job = _new_job()
    assert _record(job)[0]
    created, ran = _record(job)
    assert not created
    assert ran == [str(job.id)]
    assert read.count("SELECT count(*) FROM job_events") == 1


def test_meanwhile_runs_while_the_statement_is_in_flight() -> None:
    """Seen from another connection while ``meanwhile`` runs: the statement's backend is
    active (it waits on a row lock this test holds), so the two did overlap."""
    job = _new_job()
    assert _record(_new_job())[0]  # the non-blocking connection is made
    seen: list[str] = []
    with db.engine().connect() as other, other.begin():
        # hold the run-name counter's row of this second: the insert waits for it
        other.execute(text("LOCK TABLE run_name_counters IN EXCLUSIVE MODE"))

        def look() -> None:
            pid = _async_backend_pid()
            with db.engine().connect() as watcher:
                state = watcher.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar()
            seen.append(str(state))
            other.commit()  # let the statement through

        created, _ = _record(job, meanwhile=look)
    assert created
    assert seen == ["Lock"]


def test_a_lost_connection_falls_back_to_the_pool_and_records_once() -> None:
    assert _record(_new_job())[0]
    pid = _async_backend_pid()
    assert pid is not None
    with db.engine().connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()

    job = _new_job()
    created, ran = _record(job)
    assert created
    assert ran == [str(job.id)]
    assert read.count("SELECT count(*) FROM job_events WHERE job_id = :id", id=job.id) == 1
    assert _record(_new_job())[0]  # and the next one connects again
    assert _async_backend_pid() not in (None, pid)


def test_meanwhile_raising_leaves_the_job_recorded_and_the_connection_usable() -> None:
    job = _new_job()

    def fail() -> None:
        raise RuntimeError("building the message failed")

    with pytest.raises(RuntimeError, match="building the message failed"):
        _record(job, meanwhile=fail)
    row = read.job(job.id)
    assert row is not None
    assert row["status"] == "queued"
    pid = _async_backend_pid()
    assert _record(_new_job())[0]
    assert _async_backend_pid() == pid


def test_a_second_thread_takes_the_pool_while_the_connection_is_busy() -> None:
    inner = _new_job()
    results: list[bool] = []

    def other_thread() -> None:
        worker = threading.Thread(target=lambda: results.append(_record(inner)[0]))
        worker.start()
        worker.join()

    created, _ = _record(_new_job(), meanwhile=other_thread)
    assert created
    assert results == [True]
    assert read.job(inner.id) is not None


def test_a_forked_child_records_on_its_own_connection() -> None:
    assert _record(_new_job())[0]
    parent_pid = _async_backend_pid()
    job = _new_job()
    child = os.fork()
    if child == 0:  # the child: record, and exit with whether it did
        try:
            created = _record(job)[0] and _async_backend_pid() != parent_pid
        finally:
            os._exit(0 if created else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read.job(job.id) is not None
    assert _record(_new_job())[0]  # the parent's connection was left alone
    assert _async_backend_pid() == parent_pid


def test_the_pool_and_the_non_blocking_connection_carry_the_network_timeouts() -> None:
    """Both kinds of ledger connection give up on a silent network alike
    (``JOBLEDGER_DB_NETWORK_TIMEOUT``, tests/faults/test_db_partition.py)."""
    assert _record(_new_job())[0]  # the non-blocking connection is made
    expected = {
        name: str(value)
        for name, value in db.network_parameters(db.autocommit_engine().url).items()
    }
    pooled = db.autocommit_engine().raw_connection()
    try:
        pooled_parameters = pooled.driver_connection.get_dsn_parameters()  # type: ignore[union-attr]
    finally:
        pooled.close()
    overlapped_parameters = OVERLAPPED._connection.get_dsn_parameters()
    assert expected["tcp_user_timeout"] == "30000"
    for parameters in (pooled_parameters, overlapped_parameters):
        assert {name: parameters.get(name) for name in expected} == expected
