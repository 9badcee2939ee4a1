"""A producer cut off from the ledger by a silent network (a partition: no reset, nothing
answers) is refused within ``JOBLEDGER_DB_NETWORK_TIMEOUT`` and the write retries, with
the ledger's error, instead of blocking in the kernel's retransmissions for about 15
minutes; nothing of the refused job is written.

The producer runs on a worker host of its own (a network namespace,
:mod:`tests.support.netns`) and reaches PostgreSQL and the broker through the bridge; its
pooled connections are open when the host's link goes down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db
from tests.conftest import BROKER_URL, DATABASE_URL
from tests.support.brokers import delete_queue
from tests.support.netns import NamespacesUnavailable, Network, hosts_network
from tests.support.processes import ROOT

pytestmark = pytest.mark.fault

#: The producer's settings: a short network timeout and retry window, so the refusal
#: comes in seconds (the defaults, 30 s each, bound it to about two minutes).
CUT_PRODUCER_SETTINGS = {"JOBLEDGER_DB_NETWORK_TIMEOUT": "2", "JOBLEDGER_WRITE_RETRY_SECONDS": "3"}
#: Seconds the test waits for the refusal before it calls the producer blocked: far
#: above what the settings allow (network timeout, pre-ping, reconnect, retries), far
#: below the kernel's own ~15 minutes.
BLOCKED_AFTER = 120


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    try:
        with hosts_network(1, tmp_path) as made:
            yield made
    except NamespacesUnavailable as reason:
        pytest.skip(f"a producer host needs network namespaces: {reason}")


def _jobs_of(queue: str) -> set[str]:
    with db.engine().connect() as connection:
        rows = connection.execute(text("SELECT id FROM jobs WHERE queue = :q"), {"q": queue})
        return {str(row[0]) for row in rows}


def test_a_producer_cut_off_from_the_ledger_is_refused_and_writes_nothing(
    network: Network, tmp_path: Path
) -> None:
    queue = f"jobledger-test-cut-{uuid.uuid4().hex[:8]}"
    host = network.hosts[0]
    env = network.environment(
        {
            **os.environ,
            "JOBLEDGER_DATABASE_URL": DATABASE_URL,
            "JOBLEDGER_BROKER_URL": BROKER_URL,
            "JOBLEDGER_EXTRA_TASK_MODULES": "tests.support.jobs",
            **CUT_PRODUCER_SETTINGS,
        }
    )
    producer = subprocess.Popen(
        [*host.wrapper(), sys.executable, "-m", "tests.support.cut_producer", queue],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "producer.log").open("w"),
        text=True,
    )
    try:
        assert producer.stdout is not None
        ready = producer.stdout.readline().split()
        assert ready[:1] == ["ready"], f"the producer did not start: {ready}"
        assert _jobs_of(queue) == {ready[1]}

        host.cut()
        try:
            said, _ = producer.communicate("go\n", timeout=BLOCKED_AFTER)
        except subprocess.TimeoutExpired:
            pytest.fail(f"delay() still blocked {BLOCKED_AFTER} s after the ledger was cut off")
    finally:
        host.reconnect()
        if producer.poll() is None:
            producer.kill()
            producer.wait(10)
        delete_queue(queue)

    outcome = json.loads(said)
    print(f"refused after {outcome['seconds']} s: {outcome.get('message')}")
    assert outcome["error"] == "LedgerUnavailable", outcome
    assert "could not write" in outcome["message"]
    assert _jobs_of(queue) == {ready[1]}, "a refused job left a row"
