"""Where a worker's CPU goes: CPU milliseconds per task of each process taking part.

Usage::

    .venv/bin/python -m benchmarks.cpu                   # N = 5,000, variants a and c
    .venv/bin/python -m benchmarks.cpu --n 5000 --variants a c b

On two cores, throughput is bound by CPU: whatever the ledger adds to the worker's main
process, to its pool children, to PostgreSQL's backends or to Redis is taken from the
others. This benchmark drains the same N no-op tasks per variant (as
:mod:`benchmarks.throughput` does: queue filled first, then a fresh worker drains it) and
reads ``utime + stime`` from ``/proc`` before and after the drain for the worker's main
process, its pool children, every ``postgres`` process and ``redis-server``. The figures
are CPU ms per task; the drain's wall time per task is printed beside them.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid

from sqlalchemy import create_engine, text

from benchmarks import _harness as h
from benchmarks._proc import cpu_ms
from benchmarks.throughput import VARIANTS, WARM_UP, _empty_tables, worker_env


def pids_of(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(pid) for pid in out.stdout.split()]


class CpuProbe:
    """CPU ms a drain cost, per group of processes, for :mod:`benchmarks.issue17`.

    Unlike :func:`snapshot`, PostgreSQL's share is only that of the backends serving
    ``database`` (read from ``pg_stat_activity`` at the end of the drain, when the worker's
    connections are open): other sessions' backends on a shared server are left out, and
    a backend that exits during the drain cannot make the figure negative. The server's
    own processes (WAL writer, checkpointer) are left out too: a lower bound.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self._before: dict[str, dict[int, float]] = {}
        self._postgres: dict[int, float] = {}

    def start(self, processes: dict[str, list[int]]) -> None:
        """Read the CPU so far of ``processes`` (name: pids) and of every postgres process."""
        self._postgres = {pid: cpu_ms(pid) for pid in pids_of("postgres")}
        self._before = {
            name: {pid: cpu_ms(pid) for pid in pids} for name, pids in processes.items()
        }
        self._before["redis"] = {pid: cpu_ms(pid) for pid in pids_of("redis-server")}

    def stop(self, processes: dict[str, list[int]]) -> dict[str, float]:
        """CPU ms since :meth:`start` of each group, ``postgresql`` (the database's
        backends) and ``redis`` (the whole server: shared, for information)."""
        used = {
            name: sum(cpu_ms(pid) - self._before.get(name, {}).get(pid, 0.0) for pid in pids)
            for name, pids in {**processes, "redis": pids_of("redis-server")}.items()
        }
        used["postgresql"] = sum(
            cpu_ms(pid) - self._postgres.get(pid, 0.0) for pid in backends_of(self.database)
        )
        return used


def backends_of(database: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to ``database`` now (read from the
    admin database, so that reading adds none)."""
    admin = create_engine(h.ADMIN_URL)
    try:
        with admin.connect() as connection:
            rows = connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            ).all()
    finally:
        admin.dispose()
    return [int(row[0]) for row in rows]


def snapshot(worker: h.Worker) -> dict[str, float]:
    """CPU ms so far of each group of processes."""
    postgres = pids_of("postgres")
    return {
        "worker_main": cpu_ms(worker.process.pid),
        "pool_children": sum(cpu_ms(pid) for pid in worker.children()),
        "postgresql": sum(cpu_ms(pid) for pid in postgres),
        "redis": sum(cpu_ms(pid) for pid in pids_of("redis-server")),
    }


def measure(variant: str, count: int) -> dict[str, float]:
    task = VARIANTS[variant]
    h.clear_broker()
    _empty_tables()
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    h.publish(lambda: task.apply_async(queue=warm), WARM_UP)
    h.publish(lambda: task.apply_async(queue=run), count)
    with h.running_worker(warm, env=worker_env(variant)) as worker:
        h.wait_drained(warm)
        before = snapshot(worker)
        started = time.monotonic()
        worker.consume(run)
        finished = h.wait_drained(run)
        after = snapshot(worker)
    figures = {f"{key}_ms": (after[key] - before[key]) / count for key in before}
    figures["total_ms"] = sum(figures.values())
    figures["wall_ms"] = (finished - started) * 1000 / count
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--variants", nargs="+", default=["a", "c"], choices=sorted(VARIANTS))
    parser.add_argument("--note", default="")
    options = parser.parse_args()
    h.recreate_database()
    record = h.Record("cpu", {"n": options.n, "note": options.note})
    try:
        for variant in options.variants:
            figures = measure(variant, options.n)
            record.figures[variant] = figures
            print(
                f"{variant}: "
                + ", ".join(f"{key[:-3]} {value:.3f}" for key, value in figures.items())
                + "  (CPU ms per task)"
            )
    finally:
        h.drop_database()
    record.write()


if __name__ == "__main__":
    main()
