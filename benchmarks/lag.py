"""Ledger lag: the time from a task's return to its terminal row being visible to a
reader of the ledger.

Usage::

    .venv/bin/python -m benchmarks.lag                   # N = 2,000 jobs at 50 jobs/s
    .venv/bin/python -m benchmarks.lag --n 5000 --rate 100
    .venv/bin/python -m benchmarks.lag --rate 0          # fill the queue first: saturated

Method. Each job is a ``bench.stamped`` job task (``benchmarks/_tasks.py``) whose body
returns ``{"returned_at": time.time()}``, the wall-clock time its body ended; the ledger
stores that as the job's ``result`` in the same statement that makes the row
``succeeded``. A reader thread in the benchmark process, on its own autocommit
connection, polls every ``--poll`` seconds (default 5 ms) for the jobs published and not
yet seen terminal (``WHERE id = ANY(:pending) AND status IN (terminal)``, a primary-key
lookup of the few jobs in flight). A row first returned by a query was committed before
that query's snapshot and after the previous query's, so the **lag** of a job is the
wall-clock time its first-seen query was sent minus ``returned_at``: too high by up to
one poll interval plus one query (printed as ``resolution``), or too low by the time the
query takes to reach its snapshot (a fraction of a millisecond, which is why a minimum
can come out slightly negative). Producer, worker and PostgreSQL share one machine and
one clock, so the two timestamps compare.

Printed beside it, ``completed_at - returned_at``: the database's ``now()`` of the
finishing statement (its transaction start, autocommit) minus the return, i.e. the
worker-side part of the lag before the write, without poll resolution and without the
commit.

By default jobs are published at a steady ``--rate`` (50 jobs/s, below the worker's
capacity, so the lag is not queueing: it starts at the return), to a queue a real
``celery -A app worker`` (prefork ``-c 2``, prefetch 16) consumes. ``--rate 0`` publishes
everything first and then lets the worker drain it (the lag under saturation).
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks import _harness as h
from benchmarks._tasks import stamped

TERMINAL = ("succeeded", "partial", "failed", "canceled")
WARM_UP = 100

_SEEN = text(
    """
    SELECT id::text AS id, status, result,
           extract(epoch FROM completed_at)::float8 AS completed_epoch
    FROM jobs
    WHERE id = ANY(CAST(:ids AS uuid[])) AND status = ANY(CAST(:terminal AS text[]))
    """
)


class Watcher(threading.Thread):
    """Polls the ledger for published jobs until each has been seen terminal."""

    def __init__(self, poll: float) -> None:
        super().__init__(daemon=True)
        self.poll = poll
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.seen: dict[str, dict[str, Any]] = {}
        self.queries = 0
        self.query_seconds = 0.0
        self.stopping = threading.Event()
        self.engine = create_engine(h.DATABASE_URL, isolation_level="AUTOCOMMIT")

    def add(self, job_id: str) -> None:
        with self.lock:
            self.pending.add(job_id)

    def run(self) -> None:
        with self.engine.connect() as connection:
            while not self.stopping.is_set():
                with self.lock:
                    ids = list(self.pending)
                if ids:
                    started = time.time()
                    rows = connection.execute(_SEEN, {"ids": ids, "terminal": list(TERMINAL)}).all()
                    self.queries += 1
                    self.query_seconds += time.time() - started
                    with self.lock:
                        for row in rows:
                            self.pending.discard(row.id)
                            self.seen[row.id] = {
                                "seen_at": started,
                                "status": row.status,
                                "returned_at": float((row.result or {})["returned_at"]),
                                "completed_at": row.completed_epoch,
                            }
                time.sleep(self.poll)  # the polling interval: the resolution of the lag
        self.engine.dispose()

    def wait_all(self, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.seen) >= total:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"only {len(self.seen)} of {total} jobs seen terminal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000, help="jobs measured")
    parser.add_argument("--rate", type=float, default=50, help="jobs/s published; 0 = all first")
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between reads")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    h.recreate_database()
    h.clear_broker()
    warm, run = f"bench-warm-{uuid.uuid4().hex[:8]}", f"bench-run-{uuid.uuid4().hex[:8]}"
    watcher = Watcher(args.poll)
    try:
        with h.running_worker(warm) as worker:
            h.publish(lambda: stamped.apply_async(queue=warm), WARM_UP)
            h.wait_drained(warm)
            watcher.start()
            if args.rate > 0:
                worker.consume(run)
                interval = 1 / args.rate
                began = time.monotonic()
                for number in range(args.n):
                    pause = began + number * interval - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)  # pacing the producer to --rate
                    watcher.add(stamped.apply_async(queue=run).id)
            else:
                for _ in range(args.n):
                    watcher.add(stamped.apply_async(queue=run).id)
                worker.consume(run)
            watcher.wait_all(args.n, timeout=900)
            h.wait_drained(run)
    finally:
        watcher.stopping.set()
        if watcher.is_alive():
            watcher.join(10)
        h.clear_broker()
        if not args.keep_database:
            h.drop_database()

    seen = list(watcher.seen.values())
    lags = [(s["seen_at"] - s["returned_at"]) * 1000 for s in seen]
    writes = [(s["completed_at"] - s["returned_at"]) * 1000 for s in seen]
    not_succeeded = sum(1 for s in seen if s["status"] != "succeeded")
    query_ms = watcher.query_seconds / max(1, watcher.queries) * 1000
    summary: dict[str, Any] = {
        "lag_ms": _spread(lags),
        "completed_at_minus_return_ms": _spread(writes),
        "poll_ms": args.poll * 1000,
        "mean_query_ms": query_ms,
        "resolution_ms": args.poll * 1000 + query_ms,
        "queries": watcher.queries,
        "jobs_seen": len(seen),
        "not_succeeded": not_succeeded,
    }
    print(
        f"\nN = {args.n}, rate = {args.rate or 'saturated'} jobs/s, "
        f"poll {args.poll * 1000:.1f} ms (mean query {query_ms:.2f} ms)"
    )
    print(f"{'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  (ms)")
    for label, key in (
        ("lag: return -> row visible", "lag_ms"),
        ("return -> completed_at (DB now())", "completed_at_minus_return_ms"),
    ):
        values = summary[key]
        print(
            f"{label:34} {values['p50']:8.1f} {values['p90']:8.1f} "
            f"{values['p99']:8.1f} {values['max']:8.1f}"
        )
    if not_succeeded:
        print(f"{not_succeeded} jobs ended other than succeeded")
    h.Record(
        "lag",
        {
            "n": args.n,
            "rate": args.rate,
            "poll_s": args.poll,
            "concurrency": h.CONCURRENCY,
            "prefetch": h.PREFETCH,
            "note": args.note,
        },
        summary,
    ).write()


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": h.percentile(values, 0.50),
        "p90": h.percentile(values, 0.90),
        "p99": h.percentile(values, 0.99),
        "max": max(values),
        "min": min(values),
    }


if __name__ == "__main__":
    main()
