"""Ledger write retries are counted in the ledger (``ledger_counters.write_retries``), so
``/metrics`` reports them from any process and across restarts."""

from __future__ import annotations

import uuid

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app import db
from app.api.metrics import REGISTRY
from app.ledger import transitions as ledger
from tests.support import ledger as read


def write_retries_metric() -> float:
    """What ``GET /metrics`` would say (its registry, read now)."""
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            if sample.name == "jobledger_ledger_write_retries_total":
                return float(sample.value)
    raise AssertionError("no jobledger_ledger_write_retries_total in the exposition")


def kill_the_hot_path_connection() -> None:
    """One pooled connection on the hot path's engine (no pre-ping there), killed: the
    next write through it fails once and is retried."""
    autocommit = db.autocommit_engine()
    autocommit.dispose()
    pooled = autocommit.raw_connection()
    cursor = pooled.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = cursor.fetchone()[0]
    cursor.close()
    pooled.close()
    with db.engine().begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()


def test_a_write_whose_connection_died_is_retried_and_counted() -> None:
    assert read.count("SELECT value FROM ledger_counters WHERE name = 'write_retries'") == 0
    kill_the_hot_path_connection()

    job_id = uuid.uuid4()
    assert ledger.record_queued(ledger.NewJob(id=job_id, type="example.echo", payload={}))

    assert read.job(job_id) is not None  # the write went through, on its second try
    assert read.count("SELECT value FROM ledger_counters WHERE name = 'write_retries'") == 1
    assert write_retries_metric() == 1.0


def test_retries_the_counter_could_not_take_are_counted_with_the_next_ones() -> None:
    """The count is written after the retried write went through; when that count's own
    write fails, its retries wait for the next count instead of being lost."""
    assert read.count("SELECT value FROM ledger_counters WHERE name = 'write_retries'") == 0
    kill_the_hot_path_connection()
    with db.engine().begin() as connection:  # the counter's write fails, the job's does not
        connection.execute(text("ALTER TABLE ledger_counters RENAME TO ledger_counters_away"))
    try:
        first = uuid.uuid4()
        assert ledger.record_queued(ledger.NewJob(id=first, type="example.echo", payload={}))
    finally:
        with db.engine().begin() as connection:
            connection.execute(text("ALTER TABLE ledger_counters_away RENAME TO ledger_counters"))
    assert read.job(first) is not None
    assert read.count("SELECT value FROM ledger_counters WHERE name = 'write_retries'") == 0

    kill_the_hot_path_connection()
    second = uuid.uuid4()
    assert ledger.record_queued(ledger.NewJob(id=second, type="example.echo", payload={}))

    assert read.count("SELECT value FROM ledger_counters WHERE name = 'write_retries'") == 2
