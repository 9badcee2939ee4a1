"""The pytest plugin offered to users (app.testing.pytest_plugin) runs a job type defined
outside this repository through a real worker against a throwaway ledger: a tiny project
is written to a folder of its own and its tests run by pytest in a subprocess, the way a
team would run theirs; the ledger it leaves is then read here with SQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import normalize_database_url
from app.testing.databases import database_url, drop_database
from tests.conftest import ADMIN_URL, TEST_DB
from tests.support.faults import PrivateRedis
from tests.support.processes import ROOT

USER_DATABASE = f"{TEST_DB}_user_project"

JOBS = """
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class GreetPayload(JobPayload):
    name: str


@job_task("acme.greet", GreetPayload, subject="name")
def greet(job: JobContext, payload: GreetPayload) -> dict[str, str]:
    job.log(f"greeting {payload.name}")
    return {"greeting": f"hello {payload.name}"}


@job_task("acme.grumble", GreetPayload)
def grumble(job: JobContext, payload: GreetPayload) -> None:
    raise RuntimeError(f"no greeting for {payload.name}")
"""

TESTS = """
from greetings import greet, grumble


def test_greet_succeeds_and_says_hello(jobledger):
    job = greet.delay(name="Ada")

    row = jobledger.wait_for(job.id)

    assert row["status"] == "succeeded"
    assert row["result"] == {"greeting": "hello Ada"}
    walk = [event["to_status"] for event in jobledger.events(job.id)]
    assert walk == ["queued", "running", "succeeded"]
    assert jobledger.query("SELECT count(*) AS n FROM job_logs") == [{"n": 1}]


def test_grumble_fails_saying_why(jobledger):
    job = grumble.delay(name="Bob")

    row = jobledger.wait_for(job.id)

    assert row["status"] == "failed"
    assert "no greeting for Bob" in row["failure_reason"]
    # each test starts with an empty ledger: the other test's job is gone
    assert jobledger.query("SELECT count(*) AS n FROM jobs") == [{"n": 1}]
"""

PYPROJECT = """
[tool.pytest.ini_options]
addopts = "-p app.testing.pytest_plugin -p no:cacheprovider"
jobledger_task_modules = ["greetings"]
pythonpath = ["."]
"""


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis of its own: the session worker of this run consumes the shared db."""
    server = PrivateRedis(persistent=False)
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def user_database() -> Iterator[str]:
    yield database_url(ADMIN_URL, USER_DATABASE)
    drop_database(ADMIN_URL, USER_DATABASE)


def test_a_users_job_types_run_through_a_real_worker_on_a_throwaway_ledger(
    tmp_path: Path, private_redis: PrivateRedis, user_database: str
) -> None:
    project = tmp_path / "acme"
    project.mkdir()
    (project / "greetings.py").write_text(textwrap.dedent(JOBS))
    (project / "test_greetings.py").write_text(textwrap.dedent(TESTS))
    (project / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    # a user's shell: none of this run's JOBLEDGER_* settings, the package importable
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    environment.update(
        PYTHONPATH=str(ROOT),
        JOBLEDGER_TEST_ADMIN_URL=ADMIN_URL,
        JOBLEDGER_TEST_DATABASE=USER_DATABASE,
        JOBLEDGER_TEST_REDIS_URL=private_redis.url,
    )

    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    # the ledger the run left (a named database is kept): the last test's job, by SQL
    engine = create_engine(normalize_database_url(user_database))
    try:
        with engine.connect() as connection:
            jobs = connection.execute(text("SELECT id, type, status FROM jobs")).all()
            assert [(job.type, job.status) for job in jobs] == [("acme.grumble", "failed")]
            walk = connection.execute(
                text("SELECT to_status, worker FROM job_events WHERE job_id = :id ORDER BY id"),
                {"id": jobs[0].id},
            ).all()
    finally:
        engine.dispose()
    assert [event.to_status for event in walk] == ["queued", "running", "failed"]
    assert walk[-1].worker.startswith("jobledger-test-")  # the plugin's prefork worker
