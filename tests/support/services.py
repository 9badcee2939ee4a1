"""The fixtures that connect: a fresh ledger database for the run, the broker's Redis, real
workers. Loaded by ``tests/conftest.py`` (``pytest_plugins``), so each is defined once per
session; none is autouse: ``tests/integration``, ``tests/e2e`` and ``tests/faults`` turn
the per-test clean-up on in their conftests, and ``tests/unit`` never connects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app import db
from app.testing.databases import empty_ledger, migrated_ledger
from app.testing.databases import recreate_database as recreate
from tests.conftest import ADMIN_URL, DATABASE_URL, REDIS_URL, TEST_DB
from tests.support.brokers import empty_queues
from tests.support.processes import STARTED, WorkerProcess, start_worker


def recreate_database(name: str) -> None:
    recreate(ADMIN_URL, name)


@pytest.fixture(scope="session")
def ledger_database() -> Iterator[str]:
    """A fresh database migrated to head, for the whole run."""
    migrated_ledger(ADMIN_URL, TEST_DB)
    yield DATABASE_URL
    db.reset()


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    """The tests' Redis: the broker's on a Redis run, the gates' on every run."""
    return redis.Redis.from_url(REDIS_URL)


@pytest.fixture
def clean_ledger(ledger_database: str, redis_client: redis.Redis) -> None:
    """Every test starts with an empty ledger and an empty broker database.

    Queues first, then the live workers are let finish what they already hold: a message
    of the previous test that a worker had reserved would otherwise run after the
    TRUNCATE and bring its job back as one "with no row" (and its writes could deadlock
    with the TRUNCATE)."""
    # Not FLUSHDB: that would also drop kombu's exchange bindings of the running
    # session worker, and with them every revoke broadcast.
    gates = redis_client.keys("jobledger-test:*")  # the test jobs' gates, and test queues
    if gates:
        redis_client.delete(*gates)
    empty_queues()
    for worker in STARTED:
        if worker.process.poll() is None:
            worker.wait_until_idle()
    empty_ledger(db.engine())


@pytest.fixture(scope="session")
def worker_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="session")
def worker(worker_logs: Path) -> Iterator[WorkerProcess]:
    """One real prefork worker (2 children) shared by the end-to-end tests."""
    process = start_worker(worker_logs)
    yield process
    process.stop()


@pytest.fixture
def fresh_worker(worker_logs: Path) -> Iterator[WorkerProcess]:
    """A worker of this test's own, for tests that kill or stop it."""
    process = start_worker(worker_logs)
    yield process
    if process.process.poll() is None:
        process.stop()
