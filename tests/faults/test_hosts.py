"""Many worker hosts, one broker and one ledger: a host dies, another is cut off and comes
back, with jobs flowing — on Redis and on RabbitMQ.

Three hosts, each a network namespace of its own (:mod:`tests.support.netns`), run real
``celery -A app worker`` processes against the machine's broker and PostgreSQL. The
producer and the lifeline's beat stand on the machine (:mod:`tests.support.hosts_roles`).
While a few hundred short jobs and some longer ones run (and more keep coming), every
process of host 0 is SIGKILLed, and host 1's link goes down for longer than the heartbeat
interval, then comes back. Afterwards every job ended exactly once (one terminal event
each, and ``succeeded``: nothing lost), nothing is stuck, every history is a valid walk
of the state machine, and a body that ran to its end on the cut-off host while its job was
taken over elsewhere did not add a second outcome.

Settings that make it finish in a couple of minutes instead of the defaults' (lifeline
pass every 60 s, timeout 300 s, reservation grace 60 s, AMQP heartbeat 60 s):
``JOBLEDGER_LIFELINE_TIMEOUT=10``, a lifeline pass every 2 s,
``JOBLEDGER_RESERVATION_GRACE=5``, ``JOBLEDGER_WORKER_REPLY_TIMEOUT=1`` and Celery's
``broker_heartbeat=4`` (RabbitMQ closes a silent connection after two missed beats).
The time from the death to the dead host's jobs running elsewhere with the defaults is
measured by ``benchmarks/hosts.py --death`` (benchmarks/RESULTS.md, "Hosts").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection
from sqlalchemy import text

from app import db
from app.ledger.rules.states import TERMINAL, JobStatus, is_valid_walk
from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support import ledger
from tests.support.faults import start_fault_worker, wait_until
from tests.support.hosts import DONE_FILE, HOST_LABEL, finished_bodies
from tests.support.netns import NamespacesUnavailable, Network, hosts_network
from tests.support.processes import ROOT, WorkerProcess

pytestmark = pytest.mark.fault

#: The broker of the run (``.ci/run`` runs the faults once on Redis, once on RabbitMQ).
SESSION_BROKER = os.environ.get("JOBLEDGER_TEST_BROKER_URL") or REDIS_URL
HOSTS = 3
#: Published before the faults (long ones first), and short ones published while they last.
SHORT_JOBS, LONG_JOBS, LATE_JOBS = 200, 20, 100
#: Seconds host 1 stays cut off at least (its jobs must also have been taken over).
CUT_SECONDS = 15
LIFELINE_INTERVAL = 2
FAST_LIFELINE = {
    "JOBLEDGER_LIFELINE_TIMEOUT": "10",
    "JOBLEDGER_RESERVATION_GRACE": "5",
    "JOBLEDGER_WORKER_REPLY_TIMEOUT": "1",
}
ROLES = (sys.executable, "-m", "tests.support.hosts_roles")
#: AMQP heartbeat of the hosts' workers (Celery's default 120 s, RabbitMQ's 60 s).
BROKER_HEARTBEAT = 4


def broker_kind(url: str) -> str:
    return "rabbitmq" if url.startswith(("amqp://", "amqps://", "pyamqp://")) else "redis"


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    """The run's broker when it is of the case's kind; otherwise the case is skipped (before
    any host is made): it runs in the pass on that broker, once per broker in ``.ci/run``."""
    kind = str(request.param)
    if broker_kind(SESSION_BROKER) != kind:
        how = "JOBLEDGER_TEST_BROKER_URL=amqp://…" if kind == "rabbitmq" else "Redis (the default)"
        pytest.skip(f"this run's broker is not {kind}: its case runs in the pass with {how}")
    return SESSION_BROKER


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """Three worker hosts on a bridge of their own, removed after the test."""
    try:
        with hosts_network(HOSTS, tmp_path) as made:
            yield made
    except NamespacesUnavailable as reason:
        pytest.skip(f"worker hosts need network namespaces: {reason}")


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    """A queue of this test's own, deleted afterwards."""
    name = f"jobledger-test-hosts-{uuid.uuid4().hex[:8]}"
    yield name
    if broker_kind(SESSION_BROKER) == "redis":
        redis_client.delete(name)
    else:
        with Connection(SESSION_BROKER, connect_timeout=5) as connection:
            connection.default_channel.queue_delete(name)


def database_now() -> datetime:
    with db.engine().connect() as connection:
        return connection.execute(text("SELECT clock_timestamp()")).scalar_one()  # type: ignore[no-any-return]


def running_on(worker: WorkerProcess, *, long_only: bool = False) -> list[str]:
    """Ids of the jobs the ledger shows running on ``worker``."""
    sql = "SELECT id FROM jobs WHERE status = 'running' AND worker = :w"
    if long_only:
        sql += " AND (payload->>'seconds')::float > 0"
    with db.engine().connect() as connection:
        return [str(r[0]) for r in connection.execute(text(sql), {"w": worker.name})]


def started_elsewhere(job_ids: list[str], away_from: str, since: datetime) -> dict[str, datetime]:
    """For each job, when it first started on a worker other than ``away_from`` after
    ``since`` (jobs that did not yet are missing)."""
    if not job_ids:
        return {}
    sql = (
        "SELECT job_id, min(created_at) FROM job_events WHERE to_status = 'running' "
        "AND step_id IS NULL AND worker <> :w AND created_at > :t "
        "AND job_id = ANY(CAST(:ids AS uuid[])) GROUP BY job_id"
    )
    with db.engine().connect() as connection:
        rows = connection.execute(text(sql), {"w": away_from, "t": since, "ids": job_ids})
        return {str(job_id): at for job_id, at in rows}


def terminal_count(job_ids: list[str]) -> int:
    statuses = [s.value for s in TERMINAL]
    return ledger.count(
        "SELECT count(*) FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
        "AND status = ANY(CAST(:s AS text[]))",
        ids=job_ids,
        s=statuses,
    )


def histories() -> dict[str, list[dict[str, Any]]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM job_events WHERE step_id IS NULL ORDER BY id")
        ).mappings()
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(str(row["job_id"]), []).append(dict(row))
        return found


def publish(env: dict[str, str], queue: str, short: int, long: int) -> list[str]:
    """Publish from the machine (the producer's process, on the broker under test)."""
    published = subprocess.run(
        [
            *ROLES,
            "publish",
            f"--queue={queue}",
            f"--short={short}",
            f"--long={long}",
            "--min-seconds=2",
            "--max-seconds=5",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(published.stdout)  # type: ignore[no-any-return]


def test_a_killed_host_and_a_cut_off_host_lose_no_job_and_double_no_outcome(
    broker: str, network: Network, queue: str, tmp_path: Path
) -> None:
    url, kind = broker, broker_kind(broker)
    done_file = tmp_path / "done.log"
    common = {
        "JOBLEDGER_DATABASE_URL": DATABASE_URL,
        "JOBLEDGER_BROKER_URL": url,
        "JOBLEDGER_EXTRA_TASK_MODULES": "tests.support.jobs,tests.support.hosts",
        **FAST_LIFELINE,
    }
    roles_env = {**os.environ, **common}
    lifeline_log = (tmp_path / "lifeline.log").open("w")
    beat = subprocess.Popen(
        [*ROLES, "lifeline", f"--interval={LIFELINE_INTERVAL}"],
        env=roles_env,
        cwd=ROOT,
        stdout=lifeline_log,
        stderr=subprocess.STDOUT,
    )
    workers: list[WorkerProcess] = []
    try:
        for host in network.hosts:
            env = network.environment(
                {
                    **common,
                    DONE_FILE: str(done_file),
                    HOST_LABEL: f"host{host.index}",
                    "JOBLEDGER_TEST_CELERY_CONF": json.dumps(
                        {"broker_heartbeat": BROKER_HEARTBEAT}
                    ),
                }
            )
            workers.append(
                start_fault_worker(
                    tmp_path, queue, env=env, wrapper=host.wrapper(), prefix=f"host{host.index}"
                )
            )
        job_ids = publish(roles_env, queue, SHORT_JOBS, LONG_JOBS)
        dead, cut = network.hosts[0], network.hosts[1]
        dead_worker, cut_worker = workers[0], workers[1]

        # with jobs flowing: both hosts run a long job, host 1 a silent one (it will
        # finish its body while cut off, without a checkpoint that would stop it)
        wait_until(
            lambda: (
                running_on(dead_worker, long_only=True)
                and [
                    j
                    for j in running_on(cut_worker, long_only=True)
                    if ledger.job(j)["payload"].get("heartbeat") is False  # type: ignore[index]
                ]
            ),
            90,
            "hosts 0 and 1 running long jobs",
        )
        killed_at = database_now()
        on_dead = running_on(dead_worker)
        dead.kill_all()

        cut_at, cut_clock = database_now(), time.monotonic()
        on_cut = running_on(cut_worker)
        cut.cut()
        job_ids += publish(roles_env, queue, LATE_JOBS, 0)  # jobs keep coming meanwhile
        wait_until(
            lambda: (
                time.monotonic() - cut_clock >= CUT_SECONDS
                and len(started_elsewhere(on_cut, cut_worker.name, cut_at)) == len(on_cut)
            ),
            120,
            f"the jobs of cut-off host 1 ({len(on_cut)}) running elsewhere",
        )
        cut_for = time.monotonic() - cut_clock
        cut.reconnect()

        wait_until(lambda: terminal_count(job_ids) == len(job_ids), 180, "every job terminal")
        # warm shutdown: the reconnected host finishes what it still holds (its late
        # writes included) before the ledger is read
        for worker in workers[1:]:
            worker.stop(timeout=60)
    finally:
        beat.kill()
        beat.wait(10)
        lifeline_log.close()
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()

    events = histories()
    # the dead host's running jobs ran elsewhere (but one that it finished in the moment
    # between the look and the kill, which has its outcome from there)
    moved = started_elsewhere(on_dead, dead_worker.name, killed_at)
    unfinished = {j for j in on_dead if events[j][-1]["worker"] != dead_worker.name}
    assert unfinished <= set(moved), "a dead host's running job never ran elsewhere"

    jobs = {str(r["id"]): r for r in _all_jobs()}
    assert set(jobs) == set(job_ids)
    outcomes = Counter(
        job_id
        for job_id, history in events.items()
        for event in history
        if JobStatus(event["to_status"]) in TERMINAL
    )
    doubled = sorted(job_id for job_id, n in outcomes.items() if n > 1)
    lost = sorted(job_id for job_id, row in jobs.items() if row["status"] != "succeeded")
    for job_id, history in events.items():
        walk = [
            (JobStatus(e["from_status"]) if e["from_status"] else None, JobStatus(e["to_status"]))
            for e in history
        ]
        assert is_valid_walk(walk), (job_id, walk)

    bodies = finished_bodies(done_file)
    on_cut_host = {job_id for job_id, host in bodies if host == "host1"}
    finished_anyway = sorted(
        job_id
        for job_id in on_cut
        if job_id in on_cut_host and events[job_id][-1]["worker"] != cut_worker.name
    )
    seconds = [(moved[j] - killed_at).total_seconds() for j in unfinished] or [0.0]
    print(
        f"\n[{kind}] jobs {len(job_ids)}, lost {len(lost)}, two outcomes {len(doubled)}, "
        f"host 0 killed with {len(on_dead)} running: elsewhere after "
        f"{min(seconds):.1f}-{max(seconds):.1f} s; host 1 cut off {cut_for:.1f} s with "
        f"{len(on_cut)} running, {len(finished_anyway)} finished there anyway "
        f"(outcome from elsewhere); bodies run {len(bodies)}"
    )
    assert doubled == [], f"jobs run to two outcomes: {doubled}"
    assert lost == [], {j: jobs[j]["status"] for j in lost}
    # the case the cut-off host was cut for: a body that ended there, one outcome elsewhere
    assert finished_anyway, (on_cut, sorted(on_cut_host & set(on_cut)))


def _all_jobs() -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        return [dict(r) for r in connection.execute(text("SELECT * FROM jobs")).mappings()]
