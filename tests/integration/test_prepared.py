"""The per-job statements run prepared on PostgreSQL, and survive what a server connection
can go through: a lost prepared statement, a killed backend, a pooler without them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from sqlalchemy import text

from app import db
from app.config import settings
from app.ledger import transitions as ledger
from app.ledger.engines.prepared import Prepared
from app.ledger.rules.attribution import attributed
from tests.support import ledger as read


def run_one_job() -> uuid.UUID:
    """A job through the three prepared statements: queued, running, succeeded."""
    job_id = uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id=str(job_id))
    )
    assert ledger.record_started(
        job_id, celery_task_id=str(job_id), execution_id="e1", worker="w1"
    ).run
    assert ledger.record_finished(job_id, execution_id="e1", result={"n": 1}) is not None
    return job_id


def server_statements() -> set[str]:
    """Names prepared on the pooled autocommit connection (the one the fast path uses)."""
    with db.autocommit_engine().connect() as connection:
        rows = connection.execute(text("SELECT name FROM pg_prepared_statements"))
        return {row.name for row in rows}


def test_the_per_job_statements_are_prepared_once_on_the_connection() -> None:
    db.reset()
    run_one_job()
    run_one_job()
    assert {
        "jobledger_record_queued",
        "jobledger_record_started",
        "jobledger_record_finished",
    } <= server_statements()


def test_a_job_an_api_key_queues_takes_the_prepared_statement_too() -> None:
    """The key's name and bulk operation ride in the statement's parameters: a job the
    API (or a bulk retry) creates is not sent down the slower shared statements."""
    db.reset()
    job_id = uuid.uuid4()
    with attributed("ci-key", operation_id=7):
        assert ledger.record_queued(
            ledger.NewJob(id=job_id, type="example.echo", payload={}, celery_task_id=str(job_id))
        )
    assert "jobledger_record_queued" in server_statements()
    [created] = read.events(job_id)
    assert (created["actor_name"], created["operation_id"]) == ("ci-key", 7)


def test_a_statement_the_server_forgot_is_prepared_again() -> None:
    run_one_job()
    with db.autocommit_engine().connect() as connection:
        connection.execute(text("DEALLOCATE ALL"))  # what DISCARD ALL or a pooler does
    job_id = run_one_job()
    assert read.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]


def test_a_killed_server_connection_is_replaced_and_the_write_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_one_job()
    pooled = db.autocommit_engine()
    with pooled.connect() as first, pooled.connect() as second:  # every pooled connection
        pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (first, second)]
    with db.engine().connect() as other:
        for pid in pids:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    job_id = run_one_job()
    assert read.job(job_id)["status"] == "succeeded"
    assert "failed" in caplog.text
    assert "trying again" in caplog.text


@pytest.fixture
def without_prepared_statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBLEDGER_PREPARED_STATEMENTS", "false")
    settings.cache_clear()
    db.reset()
    yield
    monkeypatch.delenv("JOBLEDGER_PREPARED_STATEMENTS")
    settings.cache_clear()
    db.reset()


@pytest.mark.usefixtures("without_prepared_statements")
def test_behind_a_pooler_the_same_statements_are_sent_as_text() -> None:
    job_id = run_one_job()
    assert read.job(job_id)["result"] == {"n": 1}
    assert len(read.events(job_id)) == 3
    assert not {name for name in server_statements() if name.startswith("jobledger_")}


def test_the_text_form_binds_every_parameter_by_position_and_type() -> None:
    statement = Prepared("t", ("uuid", "jsonb"), "SELECT $2, $1, $2 -- 50% done")
    assert statement._as_text == (
        "SELECT CAST(%(p2)s AS jsonb), CAST(%(p1)s AS uuid), CAST(%(p2)s AS jsonb) -- 50%% done"
    )


def test_a_call_with_the_wrong_number_of_arguments_is_refused_before_the_server() -> None:
    statement = Prepared("t", ("uuid",), "SELECT $1")
    with pytest.raises(TypeError, match="t takes 1 arguments, got 2"):
        statement.first_row(("a", "b"), "test")


def test_every_fast_path_connection_goes_back_to_the_pool_outside_a_transaction() -> None:
    """The autocommit pool hands connections back without a rollback (there is nothing to
    roll back): each statement, a ``SET LOCAL`` prefix included, ends its own implicit
    transaction, and so does a statement that fails."""
    pooled = db.autocommit_engine()
    with pooled.connect() as first, pooled.connect() as second:  # the pool's two
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (first, second)}
    failing = Prepared("jobledger_test_fails", ("int4",), "SELECT 1 / $1")
    for statement, args in ((failing, (0,)), (failing, (1,))):
        with contextlib.suppress(Exception):
            statement.first_row(args, "test")
        run_one_job()  # queued; running (its SET LOCAL prefix); succeeded
        statuses = {
            db.on_driver_cursor(lambda c, _: c.connection.get_transaction_status(), "test")
            for _ in range(4)
        }
        assert statuses == {psycopg2.extensions.TRANSACTION_STATUS_IDLE}
    with pooled.connect() as first, pooled.connect() as second:  # still the same two
        again = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (first, second)}
    assert again == pids
