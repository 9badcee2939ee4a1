"""Session set-up: a fresh PostgreSQL database and Redis db for the run, real workers.

The environment is set before ``app`` is imported (settings are read once per process)
and is inherited by the worker subprocesses.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ADMIN_URL = os.environ.get(
    "JOBLEDGER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_DB = os.environ.get("JOBLEDGER_TEST_DATABASE", "jobledger_test")
REDIS_URL = os.environ.get("JOBLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"

os.environ["JOBLEDGER_DATABASE_URL"] = DATABASE_URL
os.environ["JOBLEDGER_BROKER_URL"] = REDIS_URL
os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = "tests.support.jobs"
os.environ["JOBLEDGER_PROGRESS_INTERVAL"] = "0"
os.environ["JOBLEDGER_WRITE_RETRY_SECONDS"] = "30"
# example.stubborn ignores its soft limit: the hard one ends it (tests/test_time_limits.py)
os.environ["JOBLEDGER_TIME_LIMITS"] = '{"example.stubborn": {"soft": 1, "hard": 3}}'
# The tests read source files from pytest's tmp_path and URLs from servers on 127.0.0.1;
# tests/test_source_confinement.py shows the defaults (var/data, public addresses only).
os.environ["JOBLEDGER_SOURCE_ROOTS"] = tempfile.gettempdir()
os.environ["JOBLEDGER_SOURCE_ALLOWED_NETWORKS"] = "127.0.0.0/8"

#: Where the database sources of the tests live: a SQLite file the tests write, and a
#: PostgreSQL database beside the ledger (tests/support/sources.py makes their tables).
SOURCE_DIR = Path(tempfile.gettempdir()) / f"{TEST_DB}-sources"
SOURCE_DATABASE = f"{TEST_DB}_source"
SOURCE_DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{SOURCE_DATABASE}"
os.environ["JOBLEDGER_DATABASE_SOURCES"] = json.dumps(
    {
        "bank": {
            "url": f"sqlite:///{SOURCE_DIR / 'bank.db'}",
            "tables": ["bank_tx"],
            "tenants": ["*"],
        },
        "pg_bank": {
            "url": SOURCE_DATABASE_URL,
            "tables": ["bank_tx", "sneaky_tx", "slow_tx"],
            "tenants": ["acme"],
            "statement_timeout": 1,
        },
        "ledger": {"url": DATABASE_URL, "tables": ["jobs"], "tenants": ["*"]},
        # the ledger under another host name: only the live connection can tell
        "ledger_alias": {
            "url": DATABASE_URL.replace("@127.0.0.1:", "@0.0.0.0:"),
            "tables": ["jobs"],
            "tenants": ["*"],
        },
    }
)

import pytest  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app import db  # noqa: E402
from app.config import normalize_database_url  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from tests.support.processes import STARTED, WorkerProcess, start_worker  # noqa: E402

LEDGER_TABLES = (
    "jobs, job_steps, job_events, job_logs, job_files, run_name_counters, job_daily_rollups, "
    "job_status_counts, job_status_totals, dashboard_sessions"
)


def recreate_database(name: str) -> None:
    admin = create_engine(normalize_database_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def ledger_database() -> Iterator[str]:
    """A fresh database migrated to head, for the whole run."""
    recreate_database(TEST_DB)
    upgrade(database_url=DATABASE_URL)
    yield DATABASE_URL
    db.reset()


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


@pytest.fixture(autouse=True)
def clean_ledger(ledger_database: str, redis_client: redis.Redis) -> None:
    """Every test starts with an empty ledger and an empty broker database.

    Queues first, then the live workers are let finish what they already hold: a message
    of the previous test that a worker had reserved would otherwise run after the
    TRUNCATE and bring its job back as one "with no row" (and its writes could deadlock
    with the TRUNCATE)."""
    # Not FLUSHDB: that would also drop kombu's exchange bindings of the running
    # session worker, and with them every revoke broadcast.
    stale = [*redis_client.keys("jobledger-test:*"), "celery", "unacked", "unacked_index"]
    redis_client.delete(*stale)
    for worker in STARTED:
        if worker.process.poll() is None:
            worker.wait_until_idle()
    with db.engine().begin() as connection:
        connection.execute(text(f"TRUNCATE {LEDGER_TABLES} RESTART IDENTITY CASCADE"))
        # nothing settled (TRUNCATE fires no delete trigger, so the counts start over too)
        connection.execute(
            text("UPDATE job_status_counts_watermark SET settled_before = '1970-01-01 00:00Z'")
        )


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


@pytest.fixture
def gate() -> str:
    return uuid.uuid4().hex
