"""Issue 17 side by side: every ratio the issue sets a goal for, measured in one run.

Usage::

    .venv/bin/python -m benchmarks.issue17                  # 5,000 jobs, 3 rounds, 10,000 enqueued
    .venv/bin/python -m benchmarks.issue17 --rabbitmq       # the enqueue part on RabbitMQ too
    .venv/bin/python -m benchmarks.issue17 --n 1000 --rounds 3 --enqueue-n 2000 --note "…"

**Worker** (the way :mod:`benchmarks.throughput` times it: the queue filled first, then
a fresh worker, warmed up on another queue, drains it): ``--n`` no-op jobs per
measurement, the variants alternated ``--rounds`` times — plain Celery (``bench.plain``),
Celery's SQLAlchemy result backend (``bench.stored``), the ledger (``bench.noop``) and,
when it is installed (``pip install -e '.[bench]'``), Procrastinate (an async no-op task,
a worker at concurrency ``JOBLEDGER_BENCH_CONCURRENCY`` (2), its own database
``<bench database>_procrastinate`` with Procrastinate's schema, made and dropped by the
run). Per round and as the ratio of the medians: ledger ÷ plain Celery (goal ≥ 0.9 in
every round), ledger ÷ result backend, ledger ÷ Procrastinate.

**CPU** over the same drains (:class:`benchmarks.cpu.CpuProbe`): ms per job of the
worker's main process, its pool children and the PostgreSQL backends serving the
benchmark's database; the ledger's added CPU per job is the sum of the three for the
ledger minus the same for plain Celery (goal: half the figure in benchmarks/RESULTS.md).

**Enqueue** (producer only, :func:`benchmarks.enqueue.measure`, alternated, medians):
after an untimed warm-up, ``--enqueue-n`` jobs by a plain Celery ``delay()`` loop, a
ledger ``delay()`` loop, one ``apply_many`` call of them all (``--batch`` to split it),
and Procrastinate's ``batch_defer`` of them all (the ``delay()`` loops call
``apply_async(queue=…)``: ``delay()`` is ``apply_async()`` without options). Ratios:
ledger ÷ plain (goal ≥ 0.8), ``apply_many`` ÷ plain (goal ≥ 3). On the benchmark's
Redis; with ``--rabbitmq [URL]`` (or ``JOBLEDGER_BENCH_AMQP_URL``) the Celery variants
run again on RabbitMQ, in a subprocess whose broker is that URL (the bulk path's
publishing is per broker).

Prints the machine (processor, cores, memory, load, PostgreSQL/Redis/RabbitMQ versions),
a markdown table to paste into benchmarks/RESULTS.md, and appends the figures to
``benchmarks/results/issue17.jsonl`` (``--no-record``: not).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.testing import databases
from benchmarks import _harness as h  # before _tasks imports app.celery (settings)
from benchmarks import enqueue, throughput
from benchmarks._ratios import LABELS, summarize, summarize_enqueue, tables
from benchmarks.cpu import CpuProbe

PROCRASTINATE_DATABASE = f"{h.DATABASE}_procrastinate"
#: The Procrastinate worker process (:func:`benchmarks._procrastinate.main`).
WORKER = "from benchmarks._procrastinate import main; main()"
AMQP_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/%2F"
#: Jobs each Celery enqueue variant sends once, untimed, before the rounds.
ENQUEUE_WARM_UP = 200


def procrastinate_installed() -> bool:
    return importlib.util.find_spec("procrastinate") is not None


# --- Procrastinate --------------------------------------------------------------------


def procrastinate_dsn() -> str:
    """The libpq URL of Procrastinate's database (psycopg 3 takes no SQLAlchemy driver)."""
    from sqlalchemy.engine import make_url

    url = make_url(databases.database_url(h.ADMIN_URL, PROCRASTINATE_DATABASE))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def procrastinate_database() -> Iterator[Any]:
    """Procrastinate's own database with its schema, and its App (opened, sync), dropped
    at the end."""
    os.environ["JOBLEDGER_BENCH_PROCRASTINATE_DSN"] = procrastinate_dsn()
    databases.recreate_database(h.ADMIN_URL, PROCRASTINATE_DATABASE)
    from benchmarks import _procrastinate

    try:
        with _procrastinate.app.open() as app:
            app.schema_manager.apply_schema()
            yield _procrastinate
    finally:
        databases.drop_database(h.ADMIN_URL, PROCRASTINATE_DATABASE)


def _procrastinate_sql(module: Any, sql: str) -> Any:
    import psycopg

    with psycopg.connect(module.DSN, autocommit=True) as connection:
        cursor = connection.execute(sql)
        row = cursor.fetchone() if cursor.description else None
    return row[0] if row else None


def _empty_procrastinate(module: Any) -> None:
    _procrastinate_sql(module, "TRUNCATE procrastinate_jobs CASCADE")


def defer_all(module: Any, queue: str, count: int) -> float:
    """``batch_defer`` ``count`` no-op jobs onto ``queue`` at once; the seconds it took."""
    started = time.perf_counter()
    module.noop.configure(queue=queue).batch_defer(*([{}] * count))
    return time.perf_counter() - started


def measure_procrastinate(module: Any, count: int, probe: CpuProbe) -> dict[str, float]:
    """One drain of ``count`` Procrastinate no-op jobs, timed as the Celery variants are:
    deferred first, then a worker process (warmed up on another queue) drains them."""
    _empty_procrastinate(module)
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    defer_all(module, warm, throughput.WARM_UP)
    enqueue_seconds = defer_all(module, run, count)
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, warm, run, str(h.CONCURRENCY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=h.ROOT,
        env={**os.environ, "PYTHONPATH": str(h.ROOT)},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        line = process.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"Procrastinate worker did not start: {line!r}")
        processes = {"worker_main": [process.pid]}
        probe.start(processes)
        process.stdin.write("go\n")
        process.stdin.flush()
        drained = json.loads(process.stdout.readline())
        used = probe.stop(processes)
        process.stdin.write("stop\n")
        process.stdin.flush()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    done = _procrastinate_sql(
        module, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
    )
    if done != count + throughput.WARM_UP:
        raise AssertionError(f"{done} of {count + throughput.WARM_UP} Procrastinate jobs ran")
    return {
        **{f"cpu_{name}_ms": value / count for name, value in used.items()},
        "cpu_pool_children_ms": 0.0,
        "tasks_per_s": count / drained["seconds"],
        "drain_s": drained["seconds"],
        "enqueue_per_s": count / enqueue_seconds,
    }


# --- the parts ------------------------------------------------------------------------


def worker_part(
    n: int, rounds: int, module: Any | None, log: Any
) -> list[dict[str, dict[str, float]]]:
    probe, own = CpuProbe(h.DATABASE), CpuProbe(PROCRASTINATE_DATABASE)
    results = []
    for number in range(1, rounds + 1):
        figures: dict[str, dict[str, float]] = {}
        for variant in ("a", "b", "c", *(("p",) if module is not None else ())):
            if variant == "p":
                figures[variant] = measure_procrastinate(module, n, own)
            else:
                figures[variant] = throughput.measure(variant, n, probe=probe)
            log(
                f"round {number} worker {variant} {LABELS[variant]:34} "
                f"{figures[variant]['tasks_per_s']:8.1f} jobs/s"
            )
        results.append(figures)
    return results


def enqueue_part(
    n: int, rounds: int, batch: int, module: Any | None, log: Any
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"plain": [], "ledger": [], "bulk": []}
    if module is not None:
        rates["procrastinate"] = []
    for variant in ("plain", "ledger", "bulk"):  # untimed: connections, prepared statements
        enqueue.measure(variant, ENQUEUE_WARM_UP, ENQUEUE_WARM_UP)
    for number in range(1, rounds + 1):
        for variant in rates:
            if variant == "procrastinate":
                _empty_procrastinate(module)
                rate = n / defer_all(module, "bench-enqueue", n)
            else:
                rate = enqueue.measure(variant, n, batch)
                h.delete_queues("bench-enqueue")
            rates[variant].append(rate)
            log(f"round {number} enqueue ({broker_name()}) {variant:13} {rate:9.1f} jobs/s")
    return rates


def broker_name() -> str:
    return "redis" if h.is_redis() else "rabbitmq"


def rabbitmq_part(url: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The enqueue part on RabbitMQ, in a subprocess whose broker is ``url`` (a process's
    broker is read once, from the environment); its rates and RabbitMQ's version."""
    with tempfile.TemporaryDirectory() as folder:
        emitted = Path(folder) / "enqueue.json"
        env = {
            **os.environ,
            "PYTHONPATH": str(h.ROOT),
            "JOBLEDGER_BENCH_BROKER_URL": url,
            "JOBLEDGER_BENCH_REDIS_URL": h.REDIS_URL,
            "JOBLEDGER_BENCH_DATABASE": f"{h.DATABASE}_amqp",
        }
        command = [
            sys.executable,
            "-m",
            "benchmarks.issue17",
            "--enqueue-only",
            str(emitted),
            "--enqueue-n",
            str(args.enqueue_n),
            "--rounds",
            str(args.rounds),
            "--batch",
            str(args.batch or args.enqueue_n),
        ]
        subprocess.run(command, env=env, cwd=h.ROOT, check=True)
        rates = json.loads(emitted.read_text())
    return summarize_enqueue(rates), h.rabbitmq_version(url)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="jobs per worker measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument(
        "--enqueue-n", type=int, default=10_000, help="jobs per enqueue measurement"
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="jobs per apply_many call (default: all at once)"
    )
    parser.add_argument(
        "--rabbitmq",
        nargs="?",
        const=os.environ.get("JOBLEDGER_BENCH_AMQP_URL") or AMQP_DEFAULT,
        default=os.environ.get("JOBLEDGER_BENCH_AMQP_URL"),
        metavar="URL",
        help="also the enqueue part on RabbitMQ (default URL "
        + AMQP_DEFAULT.replace("%", "%%")
        + ")",
    )
    parser.add_argument("--skip-worker", action="store_true", help="the enqueue part only")
    parser.add_argument(
        "--no-procrastinate", action="store_true", help="leave Procrastinate out even if installed"
    )
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--no-record", action="store_true", help="append nothing to results/")
    parser.add_argument("--enqueue-only", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batch = args.batch or args.enqueue_n

    def log(line: str) -> None:
        print(line, flush=True)

    if args.enqueue_only:  # the RabbitMQ subprocess of rabbitmq_part
        h.recreate_database()
        try:
            rates = enqueue_part(args.enqueue_n, args.rounds, batch, None, log)
        finally:
            h.clear_broker()
            h.delete_queues("bench-enqueue")
            h.drop_database()
        Path(args.enqueue_only).write_text(json.dumps(rates))
        return {}

    machine = h.machine()
    loads = {"start": os.getloadavg()}
    log("machine: " + json.dumps(machine))
    use_procrastinate = procrastinate_installed() and not args.no_procrastinate
    if not procrastinate_installed():
        log("Procrastinate is not installed (pip install -e '.[bench]'): its figures are left out")
    figures: dict[str, Any] = {}
    began = time.monotonic()
    h.recreate_database()
    try:
        with procrastinate_or_none(use_procrastinate) as module:
            if not args.skip_worker:
                worker_rounds = worker_part(args.n, args.rounds, module, log)
                figures["worker"] = summarize(worker_rounds)
                figures["worker_rounds"] = worker_rounds
                loads["after_worker"] = os.getloadavg()
            rates = enqueue_part(args.enqueue_n, args.rounds, batch, module, log)
            figures["enqueue_redis"] = summarize_enqueue(rates)
    finally:
        h.clear_broker()
        h.drop_database()
    if args.rabbitmq:
        figures["enqueue_rabbitmq"], machine["rabbitmq"] = rabbitmq_part(args.rabbitmq, args)
        figures["rabbitmq"] = machine["rabbitmq"]  # the record's machine is read on Redis
    loads["end"] = os.getloadavg()
    figures["load_average"] = loads
    figures["seconds"] = time.monotonic() - began

    log("")
    log(
        f"Machine: {machine['cpu_model']}, {machine['cpus']} cores, {machine['memory_gib']} GiB; "
        f"PostgreSQL {machine['postgresql']}, Redis {machine['redis']}"
        + (f", RabbitMQ {machine['rabbitmq']}" if "rabbitmq" in machine else "")
        + "; load average (1/5/15 min) "
        + ", ".join(
            f"{when} {'/'.join(f'{x:.1f}' for x in values)}" for when, values in loads.items()
        )
    )
    log(
        f"git {h.git_revision()}; worker N = {args.n}, enqueue N = {args.enqueue_n} "
        f"(apply_many batch {batch}), {args.rounds} rounds, concurrency {h.CONCURRENCY}, "
        f"prefetch {h.PREFETCH}"
    )
    log("")
    log(tables(figures, args.rounds))
    if not args.no_record:
        record = h.Record(
            "issue17",
            {
                "n": args.n,
                "rounds": args.rounds,
                "enqueue_n": args.enqueue_n,
                "batch": batch,
                "concurrency": h.CONCURRENCY,
                "prefetch": h.PREFETCH,
                "procrastinate": use_procrastinate,
                "rabbitmq": bool(args.rabbitmq),
                "note": args.note,
            },
            figures,
        )
        record.write()
    return figures


@contextmanager
def procrastinate_or_none(wanted: bool) -> Iterator[Any]:
    if not wanted:
        yield None
        return
    with procrastinate_database() as module:
        yield module


if __name__ == "__main__":
    main()
