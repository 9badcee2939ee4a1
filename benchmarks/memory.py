"""Worker memory: resident set size of a ledger worker after 1k jobs and after N jobs.

Usage::

    .venv/bin/python -m benchmarks.memory                # N = 20,000
    .venv/bin/python -m benchmarks.memory --n 50000      # the size the goals are set at
    .venv/bin/python -m benchmarks.memory --n 5000 --chunk 1000 --note "after X"

One real ``celery -A app worker`` (prefork ``-c 2``, prefetch 16, the throughput
benchmark's settings) runs ``bench.noop`` job tasks, each recorded in the ledger
(queued at publish, running and succeeded by the worker). The worker is never
restarted and the pool processes are never recycled (no ``max_tasks_per_child``), so
anything a job leaves behind accumulates in the processes measured.

The jobs are published in chunks (first 1,000, then ``--chunk`` at a time) to a queue
the worker consumes; after each chunk is drained (queue empty, nothing unacknowledged)
and a second of quiet, the RSS of the main process and of every pool child is read
from ``/proc/<pid>/status`` (``VmRSS``). The figures are the RSS after the first 1,000
jobs, after all N, and the ratio N/1k per process and for the sum (goal: flat, ≈ 1.0).
Pool children are matched by PID: if one was replaced, the run says so.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from sqlalchemy import text

from app import db
from benchmarks import _harness as h
from benchmarks._tasks import noop

FIRST = 1_000
WARM_UP = 50


def snapshot(worker: h.Worker) -> dict[str, int]:
    """RSS in KiB of the main process (``main``) and each pool child (by PID)."""
    figures = {"main": h.rss_kib(worker.process.pid)}
    for pid in sorted(worker.children()):
        figures[str(pid)] = h.rss_kib(pid)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="jobs in total (>= 1000)")
    parser.add_argument("--chunk", type=int, default=2_500, help="jobs per chunk after 1k")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    if args.n < FIRST:
        parser.error(f"--n must be at least {FIRST}")

    h.recreate_database()
    h.clear_broker()
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    checkpoints: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with h.running_worker(warm) as worker:
            h.publish(lambda: noop.apply_async(queue=warm), WARM_UP)
            h.wait_drained(warm)
            time.sleep(1)
            before = snapshot(worker)
            print(f"after warm-up ({WARM_UP} jobs): {_format(before)}", flush=True)
            worker.consume(run)
            done = 0
            while done < args.n:
                size = FIRST if done == 0 else min(args.chunk, args.n - done)
                h.publish(lambda: noop.apply_async(queue=run), size)
                h.wait_drained(run)
                done += size
                time.sleep(1)  # let the last acks and the GC settle before reading RSS
                figures = snapshot(worker)
                checkpoints.append({"jobs": done, "rss_kib": figures})
                print(f"after {done:6d} jobs: {_format(figures)}", flush=True)
        succeeded = _succeeded()
        if succeeded != WARM_UP + args.n:
            raise AssertionError(f"{succeeded} of {WARM_UP + args.n} jobs succeeded")
    finally:
        h.clear_broker()
        if not args.keep_database:
            h.drop_database()

    first, last = checkpoints[0]["rss_kib"], checkpoints[-1]["rss_kib"]
    replaced = sorted(set(first) ^ set(last))
    ratios = {key: last[key] / first[key] for key in first if key in last}
    total_first, total_last = sum(first.values()), sum(last.values())
    summary: dict[str, Any] = {
        "rss_kib_after_warm_up": before,
        "rss_kib_after_1k": first,
        "rss_kib_after_n": last,
        "ratio_n_over_1k": ratios,
        "total_kib_after_1k": total_first,
        "total_kib_after_n": total_last,
        "total_ratio_n_over_1k": total_last / total_first,
        "replaced_processes": replaced,
        "checkpoints": checkpoints,
        "jobs_succeeded": succeeded,
        "seconds": time.monotonic() - started,
    }
    print(f"\nN = {args.n}: RSS (KiB) after 1k → after N, ratio")
    for key in first:
        if key in last:
            label = "main" if key == "main" else f"child {key}"
            print(f"  {label:12} {first[key]:8d} → {last[key]:8d}   {ratios[key]:.3f}")
    print(f"  {'sum':12} {total_first:8d} → {total_last:8d}   {total_last / total_first:.3f}")
    if replaced:
        print(f"pool processes replaced during the run: {replaced}")
    h.Record(
        "memory",
        {
            "n": args.n,
            "chunk": args.chunk,
            "concurrency": h.CONCURRENCY,
            "prefetch": h.PREFETCH,
            "note": args.note,
        },
        summary,
    ).write()


def _succeeded() -> int:
    with db.engine().connect() as connection:
        count = int(
            connection.execute(
                text("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            ).scalar_one()
        )
    db.reset()
    return count


def _format(figures: dict[str, int]) -> str:
    return ", ".join(
        f"{'main' if key == 'main' else 'child ' + key} {value / 1024:.1f} MiB"
        for key, value in figures.items()
    )


if __name__ == "__main__":
    main()
