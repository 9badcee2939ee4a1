"""Throughput: what the ledger costs a worker, against Celery alone and Celery's own
result backend.

Usage::

    .venv/bin/python -m benchmarks.throughput            # N = 10,000, 3 rounds
    .venv/bin/python -m benchmarks.throughput --n 2000 --rounds 5

Variants, each the same N no-op tasks through the same Redis and the same worker
settings (prefork ``-c 2``, prefetch 16, acks late, task events on):

- **a** ``bench.plain``: plain Celery, no result backend, no ledger;
- **b** ``bench.stored``: Celery's SQLAlchemy result backend (``db+postgresql+psycopg2``)
  on the same PostgreSQL — what a user would pick instead of a ledger;
- **c** ``bench.noop``: a job task, recorded in the ledger (queued at publish, running
  and succeeded by the worker, one event per transition; the worker's lazy start
  writes a quick job's running and succeeded in one statement, after one read);
- **e** ``bench.noop`` with ``JOBLEDGER_LAZY_START_SECONDS=0``: the same job task,
  ``running`` written before the body (two worker statements per job), for comparing
  the lazy start off and on in one run (``--variants ace``);
- **g** ``bench.noop`` with ``JOBLEDGER_GROUP_COMMIT=false``: the same job task, each
  quick job's start and outcome written by its pool process, one statement and commit
  per job, instead of group-committed by the worker's main process (``--variants acg``);
- **s** ``bench.plain`` with a side load: plain Celery again, drained while a process
  keeps ``JOBLEDGER_BENCH_SIDE_LOAD`` (default 0.3) of one core busy in 1 ms slices
  (:mod:`benchmarks._side_load`), about the CPU per second the ledger adds to a drain
  on two cores: how much of the ledger's gap is that CPU sharing the machine with
  Celery's main process (``--variants acs``).

The variants are alternated (a b c a b c …) and each figure is the median over the
rounds. Each measurement fills its queue first (timing ``apply_async``: the enqueue rate
with and without the publish-side ledger write), then starts the worker on it and times
the drain. Commits come from ``pg_stat_database.xact_commit`` of the benchmark database,
split into the producer's and the worker's.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from typing import Any, Protocol

from sqlalchemy import text

from app import db
from benchmarks import _harness as h
from benchmarks._side_load import configured, side_load
from benchmarks._tasks import noop, plain, stored

VARIANTS: dict[str, Any] = {"a": plain, "b": stored, "c": noop, "e": noop, "g": noop, "s": plain}
LABELS = {
    "a": "plain Celery, no ledger",
    "b": "Celery SQLAlchemy result backend",
    "c": "jobledger job task",
    "e": "jobledger job task, lazy start off",
    "g": "jobledger job task, group commit off",
    "s": "plain Celery beside a side load",
}
#: The drain-rate ratios reported (variant over variant), when both ran.
RATIOS = (("c", "a"), ("e", "a"), ("g", "a"), ("s", "a"), ("c", "s"), ("c", "b"))


def worker_env(variant: str) -> dict[str, str]:
    """What a variant's worker adds to the environment."""
    if variant == "b":
        return {"JOBLEDGER_BENCH_RESULT_BACKEND": h.RESULT_BACKEND}
    if variant == "e":
        return {"JOBLEDGER_LAZY_START_SECONDS": "0"}
    if variant == "g":
        return {"JOBLEDGER_GROUP_COMMIT": "false"}
    return {}


WARM_UP = 200


class Probe(Protocol):
    """Something read around the drain (:class:`benchmarks.cpu.CpuProbe`)."""

    def start(self, processes: dict[str, list[int]]) -> None: ...

    def stop(self, processes: dict[str, list[int]]) -> dict[str, float]: ...


def worker_processes(worker: h.Worker) -> dict[str, list[int]]:
    return {"worker_main": [worker.process.pid], "pool_children": worker.children()}


def measure(variant: str, count: int, probe: Probe | None = None) -> dict[str, float]:
    """One measurement of one variant: enqueue, then drain with a fresh worker.

    With ``probe``, what it reads over the drain is added per task as ``cpu_<name>_ms``.
    """
    task = VARIANTS[variant]
    h.clear_broker()
    _empty_tables()
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    before = h.commits()
    h.publish(lambda: task.apply_async(queue=warm), WARM_UP)
    enqueue_seconds = h.publish(lambda: task.apply_async(queue=run), count)
    db.reset()  # the producer's connections close: PostgreSQL flushes their counters
    published = h.commits()
    with h.running_worker(warm, env=worker_env(variant)) as worker:
        h.wait_drained(warm)
        if probe is not None:
            probe.start(worker_processes(worker))
        with side_load(configured()) if variant == "s" else contextlib.nullcontext():
            started = time.monotonic()
            worker.consume(run)
            finished = h.wait_drained(run)
        used = probe.stop(worker_processes(worker)) if probe is not None else {}
    done = h.commits()
    rows = _rows(variant)
    total = count + WARM_UP
    if task is noop:  # a ledger variant: every job must have succeeded
        succeeded = _scalar("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
        if succeeded != total:
            raise AssertionError(f"{succeeded} of {total} jobs succeeded")
    return {
        **{f"cpu_{name}_ms": value / count for name, value in used.items()},
        "tasks_per_s": count / (finished - started),
        "drain_s": finished - started,
        "enqueue_per_s": count / enqueue_seconds,
        "producer_commits_per_task": (published - before) / total,
        "worker_commits_per_task": (done - published) / total,
        "rows_per_task": rows / total,
        "commits_per_row": (done - before) / rows if rows else 0.0,
    }


def _empty_tables() -> None:
    with db.engine().begin() as connection:
        connection.execute(
            text("TRUNCATE jobs, job_steps, job_events, job_logs, job_files, run_name_counters")
        )
        if connection.execute(text("SELECT to_regclass('celery_taskmeta')")).scalar():
            connection.execute(text("TRUNCATE celery_taskmeta"))
    db.reset()


def _rows(variant: str) -> int:
    if variant == "a":
        return 0
    if variant == "b":
        return _scalar("SELECT count(*) FROM celery_taskmeta")
    return sum(
        _scalar(f"SELECT count(*) FROM {table}") for table in ("jobs", "job_events", "job_logs")
    )


def _scalar(sql: str) -> int:
    with db.engine().connect() as connection:
        value = int(connection.execute(text(sql)).scalar_one())
    db.reset()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of a b c (>= 3)")
    parser.add_argument("--variants", default="abc", help="which variants, in round order")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if "s" in args.variants:
        configured()  # a side load that cannot run stops the run before it starts

    h.recreate_database()
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for number in range(1, args.rounds + 1):
            figures = {}
            for variant in args.variants:
                figures[variant] = measure(variant, args.n)
                print(
                    f"round {number} {variant}: {figures[variant]['tasks_per_s']:7.1f} tasks/s, "
                    f"enqueue {figures[variant]['enqueue_per_s']:7.1f}/s",
                    flush=True,
                )
            rounds.append(figures)
    finally:
        h.clear_broker()
        if not args.keep_database:
            h.drop_database()

    medians = {
        variant: {key: h.median([r[variant][key] for r in rounds]) for key in rounds[0][variant]}
        for variant in args.variants
    }
    summary: dict[str, Any] = {"medians": medians, "rounds": rounds}
    for over, under in RATIOS:
        if over in medians and under in medians:
            key = f"{over}_over_{under}"
            summary[key] = medians[over]["tasks_per_s"] / medians[under]["tasks_per_s"]
            summary[f"{key}_per_round"] = [
                r[over]["tasks_per_s"] / r[under]["tasks_per_s"] for r in rounds
            ]
    if "a" in medians and "c" in medians:
        summary["enqueue_c_over_a"] = medians["c"]["enqueue_per_s"] / medians["a"]["enqueue_per_s"]

    print(f"\nN = {args.n}, {args.rounds} rounds, medians:")
    print(f"{'variant':40} {'tasks/s':>8} {'enqueue/s':>10} {'commits/task':>14} {'rows/task':>9}")
    for variant, values in medians.items():
        print(
            f"{variant} {LABELS[variant]:38} {values['tasks_per_s']:8.1f} "
            f"{values['enqueue_per_s']:10.1f} "
            f"{values['producer_commits_per_task']:5.2f} + {values['worker_commits_per_task']:5.2f}"
            f"  {values['rows_per_task']:9.2f}"
        )
    for key in [f"{over}_over_{under}" for over, under in RATIOS] + ["enqueue_c_over_a"]:
        if key in summary:
            print(f"{key}: {summary[key]:.2f}")
    if "c" in medians:
        print(f"commits per ledger row (c): {medians['c']['commits_per_row']:.2f}")
    h.Record(
        "throughput",
        {
            "n": args.n,
            "rounds": args.rounds,
            "concurrency": h.CONCURRENCY,
            "prefetch": h.PREFETCH,
            "warm_up": WARM_UP,
            "note": args.note,
        },
        summary,
    ).write()


if __name__ == "__main__":
    main()
