"""The environment of a test run, and nothing that connects.

The environment is set before ``app`` is imported (settings are read once per process)
and is inherited by the worker subprocesses. The layers below need, in turn: nothing
(``tests/unit``), the ledger database, the broker and the tests' Redis (``tests/integration``),
real workers (``tests/e2e``), workers they kill and servers they stop (``tests/faults``).
The fixtures that connect live in ``tests/support/services.py`` (a plugin loaded here,
nothing of it autouse); each layer that needs them turns the per-test clean-up on in
its own conftest.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

ADMIN_URL = os.environ.get(
    "JOBLEDGER_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_DB = os.environ.get("JOBLEDGER_TEST_DATABASE", "jobledger_test")
#: The tests' Redis: the broker by default, and always where the test jobs' gates live
#: (lists a test and a job body meet on, whatever the broker).
REDIS_URL = os.environ.get("JOBLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
#: The broker of the run: the tests' Redis unless ``JOBLEDGER_TEST_BROKER_URL`` names
#: another (``amqp://guest:guest@127.0.0.1:5672/<vhost>`` runs them on RabbitMQ).
BROKER_URL = os.environ.get("JOBLEDGER_TEST_BROKER_URL") or REDIS_URL
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB}"

os.environ["JOBLEDGER_DATABASE_URL"] = DATABASE_URL
os.environ["JOBLEDGER_BROKER_URL"] = BROKER_URL
os.environ["JOBLEDGER_TEST_REDIS_URL"] = REDIS_URL  # the workers' test jobs read their gates
os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = "tests.support.jobs"
os.environ["JOBLEDGER_PROGRESS_INTERVAL"] = "0"
os.environ["JOBLEDGER_WRITE_RETRY_SECONDS"] = "30"
# example.stubborn ignores its soft limit: the hard one ends it (tests/e2e/test_time_limits.py)
os.environ["JOBLEDGER_TIME_LIMITS"] = '{"example.stubborn": {"soft": 1, "hard": 3}}'
# The tests read source files from pytest's tmp_path and URLs from servers on 127.0.0.1;
# tests/e2e/test_source_confinement.py shows the defaults (var/data, public addresses only).
os.environ["JOBLEDGER_SOURCE_ROOTS"] = tempfile.gettempdir()
os.environ["JOBLEDGER_SOURCE_ALLOWED_NETWORKS"] = "127.0.0.0/8"
#: The tenants' interface areas of ``interface_run`` (inbox/, archive/ per tenant).
INTERFACE_DIR = Path(tempfile.gettempdir()) / f"{TEST_DB}-interfaces"
os.environ["JOBLEDGER_INTERFACE_DIR"] = str(INTERFACE_DIR)

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

#: The connecting fixtures (ledger database, Redis, workers): defined once for the session.
pytest_plugins = ["tests.support.services"]


@pytest.fixture
def gate() -> str:
    return uuid.uuid4().hex
