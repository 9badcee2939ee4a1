"""pytest fixtures that run your job types through a real worker against a throwaway ledger.

Opt-in; load it before anything imports ``app.celery`` (settings are read once per
process), in your ``pyproject.toml``::

    [tool.pytest.ini_options]
    addopts = "-p app.testing.pytest_plugin"
    jobledger_task_modules = ["myproject.jobs"]   # the modules defining your job types
    pythonpath = ["."]                           # so the worker and the tests import them

When it loads it points this process at a fresh ledger database and a Redis db (and so
every worker it starts, which inherits the environment):

- ``JOBLEDGER_TEST_ADMIN_URL``: a PostgreSQL database to connect to while making the
  throwaway one (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
- ``JOBLEDGER_TEST_DATABASE``: the throwaway database's name, made afresh and migrated
  at the start; by default ``jobledger_test_<random>``, dropped at the end (a name you
  give is kept, to look at after the run);
- ``JOBLEDGER_TEST_REDIS_URL``: the broker (default ``redis://127.0.0.1:6379/15``); give
  each concurrent run a Redis db of its own: the clean-up empties every queue of
  :func:`app.queues.queue_names`;
- ``JOBLEDGER_TEST_BROKER_URL``: another broker instead, e.g. RabbitMQ
  (``amqp://guest:guest@127.0.0.1:5672/<vhost>``; a vhost of its own per concurrent run).

Fixtures: ``jobledger`` (per test: an emptied ledger and broker, a real worker, helpers
to wait for a job and read the ledger with SQL), ``jobledger_worker`` (the session's
``celery -A app worker`` process, prefork, 2 children) and ``jobledger_database_url``.

Not a Docker fixture: pytest-celery's ``celery_worker`` needs a Docker daemon, and
Celery's in-process test worker (solo pool) never forks, so neither shows what a prefork
worker does with your job (its signals, acks, time limits, a killed child).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.testing.databases import database_url, drop_database, empty_ledger, migrated_ledger
from app.testing.workers import WorkerProcess, start_worker

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass(frozen=True)
class Target:
    """Where this run's ledger and broker are."""

    admin_url: str
    database: str
    broker_url: str
    #: the name was made up here: the database goes at the end of the run
    generated: bool

    @property
    def database_url(self) -> str:
        return database_url(self.admin_url, self.database)


_target: Target | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "jobledger_task_modules",
        "modules defining the job types the test worker runs (JOBLEDGER_EXTRA_TASK_MODULES)",
        type="linelist",
        default=[],
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    _point_at_throwaway_ledger(early_config)


def pytest_configure(config: pytest.Config) -> None:
    _point_at_throwaway_ledger(config)  # loaded late (pytest_plugins): not too late, checked


def _point_at_throwaway_ledger(config: pytest.Config) -> None:
    global _target
    if _target is not None:
        return
    if "app.celery" in sys.modules:
        raise pytest.UsageError(
            "app.testing.pytest_plugin was loaded after app.celery had read its settings: "
            'load it with -p (addopts = "-p app.testing.pytest_plugin") so it can point '
            "the ledger and broker at the throwaway ones first"
        )
    named = os.environ.get("JOBLEDGER_TEST_DATABASE")
    _target = Target(
        admin_url=os.environ.get("JOBLEDGER_TEST_ADMIN_URL", DEFAULT_ADMIN_URL),
        database=named or f"jobledger_test_{uuid.uuid4().hex[:8]}",
        broker_url=os.environ.get("JOBLEDGER_TEST_BROKER_URL")
        or os.environ.get("JOBLEDGER_TEST_REDIS_URL", DEFAULT_REDIS_URL),
        generated=not named,
    )
    os.environ["JOBLEDGER_DATABASE_URL"] = _target.database_url
    os.environ["JOBLEDGER_BROKER_URL"] = _target.broker_url
    modules = [str(name) for name in config.getini("jobledger_task_modules")]
    if modules:
        os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = ",".join(modules)


@pytest.fixture(scope="session")
def jobledger_database_url() -> Iterator[str]:
    """A fresh ledger database migrated to head for the session (dropped at its end unless
    ``JOBLEDGER_TEST_DATABASE`` named it)."""
    from app import db

    assert _target is not None, "app.testing.pytest_plugin was not configured"
    url = migrated_ledger(_target.admin_url, _target.database)
    yield url
    db.reset()
    if _target.generated:
        drop_database(_target.admin_url, _target.database)


@pytest.fixture(scope="session")
def jobledger_worker(
    jobledger_database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[WorkerProcess]:
    """One real ``celery -A app worker`` (prefork, 2 children) for the session, started in
    the project's root with it on ``PYTHONPATH``, so it imports your job types' modules."""
    root = str(pytestconfig.rootpath)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    worker = start_worker(
        tmp_path_factory.mktemp("jobledger-worker"),
        env={**os.environ, "PYTHONPATH": path},
        cwd=pytestconfig.rootpath,
        prefix="jobledger-test",
    )
    yield worker
    worker.stop()


class Ledger:
    """The throwaway ledger of one test, and the worker that runs its jobs."""

    def __init__(self, worker: WorkerProcess) -> None:
        from app import db

        self.worker = worker
        self.engine: Engine = db.engine()

    def query(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        """Rows of ``sql`` on the ledger, as dicts (bind ``:name`` parameters by keyword)."""
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(text(sql), parameters).mappings()]

    def job(self, job_id: object) -> dict[str, Any] | None:
        """The ``jobs`` row of ``job_id`` (a ``delay()`` result's ``id``), or None."""
        rows = self.query("SELECT * FROM jobs WHERE id = :id", id=str(job_id))
        return rows[0] if rows else None

    def wait_for(self, job_id: object, timeout: float = 60) -> dict[str, Any]:
        """The ``jobs`` row of ``job_id`` once it is terminal (succeeded, partial, failed or
        canceled); fails the test, with the worker's log, if it is not within ``timeout``."""
        from app.ledger.rules.states import TERMINAL

        terminal = {status.value for status in TERMINAL}
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = self.job(job_id)
            if row is not None and row["status"] in terminal:
                return row
            time.sleep(0.05)  # polling interval of the check
        pytest.fail(f"job {job_id} not terminal after {timeout}s: {row}\n{self.worker.log()}")

    def events(self, job_id: object) -> list[dict[str, Any]]:
        """The job's transitions (``job_events``) in order."""
        return self.query("SELECT * FROM job_events WHERE job_id = :id ORDER BY id", id=str(job_id))


@pytest.fixture
def jobledger(jobledger_worker: WorkerProcess) -> Ledger:
    """An empty ledger and broker queue, and the session's real worker idle on them."""
    from app import db
    from app.queues import queue_names
    from app.testing import broker_queues

    assert _target is not None
    broker_queues.empty(queue_names())
    jobledger_worker.wait_until_idle()
    empty_ledger(db.engine())
    return Ledger(jobledger_worker)


__all__ = ["Ledger", "jobledger", "jobledger_database_url", "jobledger_worker"]
