"""Throughput across worker hosts: jobs/s with 1, 2 and 3 hosts, and the ledger's share of
PostgreSQL's CPU; with ``--death``, the time from a host's death to its jobs running
elsewhere, with the default lifeline settings.

Usage (as root: the hosts are network namespaces, :mod:`tests.support.netns`)::

    .venv/bin/python -m benchmarks.hosts                       # N = 3,000, 3 rounds, Redis
    JOBLEDGER_BENCH_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/%2F \\
        .venv/bin/python -m benchmarks.hosts --n 3000          # the same on RabbitMQ
    .venv/bin/python -m benchmarks.hosts --death               # death -> elsewhere, defaults

The set-up of ``tests/faults/test_hosts.py``: each host a network namespace with its own
address, one worker per host (prefork ``-c 2``, prefetch 16 as every benchmark), the
machine's broker and PostgreSQL reached through the forwarders on the bridge. Each
measurement fills a run queue with N ``bench.noop`` jobs, starts the hosts' workers on a
warm-up queue, then tells them all to consume the run queue and times the drain until
the ledger shows every job ``succeeded`` (read from the ledger, so the same on both
brokers). The host counts are alternated (1 2 3 1 2 3 …), medians per count; ``--hosts
0,1,2,3`` adds a baseline, one worker on the machine itself (no namespace, no forwarder),
which shows what the forwarders cost.

PostgreSQL CPU: ``utime + stime`` from ``/proc`` of every ``postgres`` process over the
drain, and of the backends serving the benchmark's database (the ledger's statements;
this process's polling connection excluded). Reported: the ledger's backends' CPU ms per
job; their share of all PostgreSQL CPU (other databases' backends, other runs on a shared
server, included: a lower bound); their share without the other databases' backends
(against the ledger plus the server's own processes: WAL writer, checkpointer…); and
their share of the machine's CPU over the drain. ``pg_stat_statements`` is not used: it
must be preloaded at server start (a restart of a server others use).

On two cores the hosts share the CPU: more hosts cannot add CPU, only concurrency
(what a second machine would add, this one cannot). The figures show what the ledger
and the broker cost as hosts are added, not how real machines would scale.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import db
from app.testing import workers
from benchmarks import _harness as h  # before _tasks imports app.celery (settings)
from benchmarks._tasks import noop
from benchmarks.cpu import cpu_ms, pids_of
from benchmarks.throughput import WARM_UP, _empty_tables
from tests.support.netns import Network, hosts_network

TASK_MODULES = "benchmarks._tasks,tests.support.hosts"
BATCH = 500
#: The lifeline settings that decide how soon a dead host's jobs run elsewhere (defaults).
DEFAULT_LIFELINE_INTERVAL = 60.0


def start_hosts(network: Network, count: int, queue: str, **env: str) -> list[h.Worker]:
    """One worker on each of the first ``count`` hosts, consuming ``queue``; ``count`` 0:
    one worker on the machine itself (no namespace, no forwarder: the baseline)."""
    variables = {**os.environ, "JOBLEDGER_EXTRA_TASK_MODULES": TASK_MODULES, **env}
    if count == 0:
        return [_start(variables, queue, "bench-machine", ())]
    return [
        _start(network.environment(variables), queue, f"bench-host{host.index}", host.wrapper())
        for host in network.hosts[:count]
    ]


def _start(env: dict[str, str], queue: str, prefix: str, wrapper: tuple[str, ...]) -> h.Worker:
    return workers.start_worker(
        h.RESULTS / "logs",
        concurrency=h.CONCURRENCY,
        queues=(queue,),
        env=env,
        cwd=h.ROOT,
        loglevel="WARNING",
        prefix=prefix,
        wrapper=wrapper,
    )


@contextlib.contextmanager
def ledger_poll() -> Iterator[tuple[Any, int]]:
    """A connection to the ledger for polling, and its backend's pid (not the ledger's)."""
    engine = create_engine(h.DATABASE_URL)
    try:
        with engine.connect() as connection:
            pid = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            yield connection, pid
    finally:
        engine.dispose()


def succeeded(connection: Any) -> int:
    statement = text("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
    value = int(connection.execute(statement).scalar_one())
    connection.commit()  # a fresh snapshot for the next read
    return value


def wait_succeeded(connection: Any, count: int, timeout: float = 900) -> float:
    """Poll until ``count`` jobs succeeded; the monotonic time it was first seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if succeeded(connection) >= count:
            return time.monotonic()
        time.sleep(0.02)  # polling interval of the check
    raise TimeoutError(f"{count} jobs not succeeded after {timeout}s")


def backends(connection: Any, own: int) -> tuple[list[int], list[int]]:
    """Pids of the backends serving the ledger, and of those serving other databases (other
    runs on a shared server), this process's polling connection in neither."""
    rows = connection.execute(
        text("SELECT pid, datname FROM pg_stat_activity WHERE datname IS NOT NULL AND pid <> :own"),
        {"own": own},
    ).all()
    connection.commit()
    ledger = [int(pid) for pid, name in rows if name == h.DATABASE]
    return ledger, [int(pid) for pid, name in rows if name != h.DATABASE]


def machine_busy_ms() -> float:
    """CPU ms the whole machine spent busy so far (``/proc/stat``, all cores)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(network: Network, count: int, n: int) -> dict[str, float]:
    """One drain of ``n`` no-op jobs by ``count`` hosts."""
    _empty_tables()
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    noop.apply_many([{}] * WARM_UP, queue=warm)
    for start in range(0, n, BATCH):
        noop.apply_many([{}] * min(BATCH, n - start), queue=run)
    db.reset()
    hosts = start_hosts(network, count, warm)
    try:
        with ledger_poll() as (connection, own):
            wait_succeeded(connection, WARM_UP)
            before = {pid: cpu_ms(pid) for pid in pids_of("postgres")}
            busy_before = machine_busy_ms()
            started = time.monotonic()
            for worker in hosts:
                worker.consume(run)
            finished = wait_succeeded(connection, WARM_UP + n)
            after = {pid: cpu_ms(pid) for pid in pids_of("postgres")}
            busy = machine_busy_ms() - busy_before
            serving, others = backends(connection, own)
    finally:
        for worker in hosts:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
        h.delete_queues(warm, run)

    def used(pids: Any) -> float:
        return sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in pids)

    postgres, ledger, other = used(after), used(serving), used(others)
    seconds = finished - started
    capacity = seconds * 1000 * (os.cpu_count() or 1)
    return {
        "jobs_per_s": n / seconds,
        "drain_s": seconds,
        "postgres_cpu_ms_per_job": postgres / n,
        "ledger_cpu_ms_per_job": ledger / n,
        # of every postgres process: other databases' backends (other runs) included
        "ledger_share_of_postgres_cpu": ledger / postgres if postgres else 0.0,
        # of the server's work for this benchmark: the ledger's backends and the server's
        # own processes (WAL writer, checkpointer…), other databases' backends left out
        "ledger_share_of_own_postgres_cpu": ledger / (postgres - other)
        if postgres > other
        else 0.0,
        "ledger_share_of_machine": ledger / capacity,
        "machine_busy_fraction": busy / capacity,
    }


def throughput(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.hosts.split(",")]
    rounds: list[dict[str, dict[str, float]]] = []
    h.recreate_database()
    try:
        with hosts_network(max(max(counts), 1)) as network:
            for number in range(1, args.rounds + 1):
                figures: dict[str, dict[str, float]] = {}
                for count in counts:
                    figures[str(count)] = measure(network, count, args.n)
                    f = figures[str(count)]
                    print(
                        f"round {number}, {count} host(s): {f['jobs_per_s']:7.1f} jobs/s, "
                        f"ledger's PostgreSQL backends {f['ledger_cpu_ms_per_job']:.2f} ms/job "
                        f"({f['ledger_share_of_postgres_cpu']:.0%} of all PostgreSQL CPU, "
                        f"{f['ledger_share_of_own_postgres_cpu']:.0%} without other "
                        f"databases'), machine {f['machine_busy_fraction']:.0%} busy",
                        flush=True,
                    )
                rounds.append(figures)
    finally:
        if not args.keep_database:
            h.drop_database()
    medians = {
        count: {key: h.median([r[count][key] for r in rounds]) for key in rounds[0][count]}
        for count in rounds[0]
    }
    base = medians.get("1", medians[str(counts[0])])["jobs_per_s"]
    print(f"\nbroker {broker_name()}, N = {args.n}, {args.rounds} rounds, medians:")
    print(
        f"{'hosts':>5} {'jobs/s':>8} {'x 1 host':>8} {'ledger PG ms/job':>16} "
        f"{'share of PG':>11} {'w/o other dbs':>13} {'of machine':>10}"
    )
    for count, m in medians.items():
        print(
            f"{count:>5} {m['jobs_per_s']:8.1f} {m['jobs_per_s'] / base:8.2f} "
            f"{m['ledger_cpu_ms_per_job']:16.2f} {m['ledger_share_of_postgres_cpu']:11.0%} "
            f"{m['ledger_share_of_own_postgres_cpu']:13.0%} {m['ledger_share_of_machine']:10.0%}"
        )
    parameters = {
        "broker": broker_name(),
        "n": args.n,
        "rounds": args.rounds,
        "hosts": counts,
        "concurrency": h.CONCURRENCY,
        "prefetch": h.PREFETCH,
        "note": args.note,
    }
    h.Record("hosts", parameters, {"medians": medians, "rounds": rounds}).write()


def death(args: argparse.Namespace) -> None:
    """Time from SIGKILL of a host running jobs to those jobs running on another host, with
    the default lifeline settings and a lifeline pass every 60 s, as beat runs it."""
    h.recreate_database()
    queue = f"bench-death-{uuid.uuid4().hex[:8]}"
    defaults = {"JOBLEDGER_PREFETCH_MULTIPLIER": "4"}  # the application's default too
    lifeline = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.hosts_roles",
            "lifeline",
            f"--interval={DEFAULT_LIFELINE_INTERVAL:g}",
        ],
        env={**os.environ, **defaults},
        cwd=h.ROOT,
    )
    try:
        with hosts_network(3) as network:
            victim = start_hosts(network, 1, queue, **defaults)[0]
            jobs = [r.id for r in _long_jobs(queue, args.death_jobs)]
            with ledger_poll() as (connection, _):
                _wait(lambda: _running(connection, victim.name) == len(jobs), 120)
                others = start_hosts(network, 3, queue, **defaults)[1:]
                killed = _now(connection)
                network.hosts[0].kill_all()
                _wait(lambda: len(_elsewhere(connection, jobs, victim.name, killed)) == len(jobs))
                moved = _elsewhere(connection, jobs, victim.name, killed)
            for worker in others:
                worker.kill()
            for worker in (victim, *others):
                worker.log_path.unlink(missing_ok=True)
    finally:
        lifeline.kill()
        lifeline.wait(10)
        h.delete_queues(queue)
        if not args.keep_database:
            h.drop_database()
    seconds = sorted((at - killed).total_seconds() for at in moved.values())
    print(
        f"broker {broker_name()}: {len(jobs)} running jobs of the killed host ran elsewhere "
        f"after {seconds[0]:.1f} to {seconds[-1]:.1f} s (defaults; lifeline every "
        f"{DEFAULT_LIFELINE_INTERVAL:g} s)"
    )
    parameters = {"broker": broker_name(), "mode": "death", "jobs": len(jobs), "note": args.note}
    figures = {"death_to_elsewhere_s": seconds, "lifeline_interval_s": DEFAULT_LIFELINE_INTERVAL}
    h.Record("hosts", parameters, figures).write()


def _long_jobs(queue: str, count: int) -> list[Any]:
    from tests.support.hosts import work

    return work.apply_many([{"seconds": 600}] * count, queue=queue)  # type: ignore[no-any-return]


def _running(connection: Any, worker: str) -> int:
    statement = text("SELECT count(*) FROM jobs WHERE status = 'running' AND worker = :w")
    value = int(connection.execute(statement, {"w": worker}).scalar_one())
    connection.commit()
    return value


def _elsewhere(connection: Any, jobs: list[str], away: str, since: Any) -> dict[str, Any]:
    rows = connection.execute(
        text(
            "SELECT job_id, min(created_at) FROM job_events WHERE to_status = 'running' "
            "AND worker <> :w AND created_at > :t AND job_id = ANY(CAST(:ids AS uuid[])) "
            "GROUP BY job_id"
        ),
        {"w": away, "t": since, "ids": jobs},
    )
    found = {str(job_id): at for job_id, at in rows}
    connection.commit()
    return found


def _now(connection: Any) -> Any:
    value = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
    connection.commit()
    return value


def _wait(condition: Any, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached after {timeout}s")
        time.sleep(0.2)  # polling interval of the check


def broker_name() -> str:
    return "redis" if h.is_redis() else "rabbitmq"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 1 2 3 hosts")
    parser.add_argument(
        "--hosts", default="1,2,3", help="host counts, in round order (0: on the machine)"
    )
    parser.add_argument("--death", action="store_true", help="measure death -> elsewhere")
    parser.add_argument("--death-jobs", type=int, default=2, help="jobs on the dying host")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.death:
        death(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
