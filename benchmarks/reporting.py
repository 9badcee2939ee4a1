"""Reporting: the ledger's reads at scale — status counts, the dashboard's first page and
one job's detail — against a naive ``count(*) … GROUP BY status``.

Usage::

    .venv/bin/python -m benchmarks.reporting                 # 1M jobs, 50 repeats each
    .venv/bin/python -m benchmarks.reporting --jobs 10000000 # 10M (long: ~10x the seeding)
    .venv/bin/python -m benchmarks.reporting --jobs 200000 --repeat 20

Seeds ``--jobs`` jobs created evenly over the last 30 days (the retention), live ones
(queued or running) only among the newest 0.1 % (0.02 % of all), ~2 % failed, with
``--events`` events and ``--logs`` log lines per job, set-based
(``benchmarks/_seed.py``), then ``VACUUM ANALYZE``, then the first settle of the status
counts (:func:`app.ledger.reads.counts.settle`, timed: what an upgrade's first beat run costs).
Then each read is timed ``--repeat`` times, in process, through the real functions of
:mod:`app.ledger.reads.reports` (the ones the CLI, the API and the dashboard call), warm
cache, **while ingest runs**: a separate process records ``--ingest-rate`` jobs per
second (queued, running, succeeded through :mod:`app.ledger.transitions`) and settles the
counts every 10 s as beat would (``--ingest-rate 0``: nothing else writing):

- ``stats``: :func:`reports.stats` (counts per type and status, live count, oldest live:
  settled counts plus the live remainder, :mod:`app.ledger.reads.counts`);
- ``first_page``: :func:`reports.list_jobs` with ``limit=50`` (newest first);
- ``detail``: :func:`reports.job_detail` of a job picked at random per repeat (by id);
- ``naive``: ``SELECT status, count(*) FROM jobs GROUP BY status``.

p50/p95/max in milliseconds, and the ratio ``stats`` / ``naive``. Every SQL statement
each function sends is captured (SQLAlchemy ``before_cursor_execute``) and its plan
printed with ``EXPLAIN (ANALYZE, BUFFERS)`` — first lines and the indexes it uses.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text

from app import db
from app.ledger import transitions as ledger
from app.ledger.reads import counts, reports
from benchmarks import _harness as h
from benchmarks import _seed

NAIVE = "SELECT status, count(*) FROM jobs GROUP BY status"
PLAN_LINES = 8


def capture(call: Callable[[], Any]) -> list[str]:
    """The SQL statements ``call`` sends, with their parameters inlined (psycopg2)."""
    sent: list[str] = []

    def listen(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append(cursor.mogrify(statement, parameters).decode())

    engine = db.engine()
    event.listen(engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    return [s for s in sent if not s.lstrip().upper().startswith(("SHOW", "SELECT PG_"))]


def explain(statement: str) -> list[str]:
    with db.engine().connect() as connection:
        rows = connection.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + statement)).all()
    return [row[0] for row in rows]


def indexes_used(plan: list[str]) -> list[str]:
    found = re.findall(
        r"(?:Index|Index Only|Bitmap Index) Scan(?: Backward)? (?:using|on) (\w+)", "\n".join(plan)
    )
    return sorted(set(found))


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    call()  # one warm-up call (plans, cache)
    values = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        values.append((time.perf_counter() - started) * 1000)
    return values


def ingest(rate: float, stop: Any, recorded: Any) -> None:
    """Record ``rate`` jobs per second end to end, settling every 10 s, until ``stop``."""
    db.reset()  # a forked process opens its own connections
    started = time.monotonic()
    last_settle = started
    done = 0
    while not stop.is_set():
        job_id = uuid.uuid4()
        ledger.record_queued(
            ledger.NewJob(id=job_id, type="bench.ingest", payload={}, celery_task_id=str(job_id))
        )
        ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e", worker="w")
        ledger.record_finished(job_id, execution_id="e", result=None)
        done += 1
        recorded.value = done
        now = time.monotonic()
        if now - last_settle >= 10:
            counts.settle()
            last_settle = now
        ahead = done / rate - (now - started)
        if ahead > 0:
            time.sleep(ahead)  # pacing the writer to its rate, not standing in for work


def naive() -> None:
    with db.engine().connect() as connection:
        connection.execute(text(NAIVE)).all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs seeded")
    parser.add_argument("--events", type=int, default=3, help="events per job")
    parser.add_argument("--logs", type=int, default=2, help="log lines per job")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per read")
    parser.add_argument(
        "--ingest-rate", type=float, default=100, help="jobs/s recorded during the reads (0: none)"
    )
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    h.recreate_database()
    began = time.monotonic()
    try:
        print(f"seeding {args.jobs:,} jobs", flush=True)
        with db.engine().connect() as connection:
            now = reports.database_now(connection)
        seeding = _seed.seed(
            args.jobs,
            newest=now,
            span=timedelta(days=30),
            events_per_job=args.events,
            logs_per_job=args.logs,
            live=True,
        )
        sizes = _seed.table_sizes()
        settle_started = time.monotonic()
        settled = counts.settle()
        seeding["first_settle_s"] = time.monotonic() - settle_started
        print(f"first settle: {settled:,} jobs in {seeding['first_settle_s']:.1f} s", flush=True)
        with db.engine().connect() as connection:
            ids = [
                str(row[0])
                for row in connection.execute(
                    text("SELECT id FROM jobs TABLESAMPLE SYSTEM (1) LIMIT 1000")
                )
            ]
        rng = random.Random(5)
        reads: dict[str, Callable[[], Any]] = {
            "stats": reports.stats,
            "first_page": lambda: reports.list_jobs(limit=50),
            "detail": lambda: reports.job_detail(rng.choice(ids)),
            "naive": naive,
        }
        figures: dict[str, Any] = {}
        plans: dict[str, Any] = {}
        stop, recorded = multiprocessing.Event(), multiprocessing.Value("l", 0)
        writer = multiprocessing.Process(target=ingest, args=(args.ingest_rate, stop, recorded))
        if args.ingest_rate > 0:
            db.reset()  # nothing inherited by the writer
            writer.start()
        ingest_started = time.monotonic()
        try:
            for name, call in reads.items():
                values = timed(call, args.repeat)
                figures[name] = {
                    "p50_ms": h.percentile(values, 0.50),
                    "p95_ms": h.percentile(values, 0.95),
                    "max_ms": max(values),
                }
                print(
                    f"{name:11} p50 {figures[name]['p50_ms']:8.2f} ms   "
                    f"p95 {figures[name]['p95_ms']:8.2f} ms   "
                    f"max {figures[name]['max_ms']:8.2f} ms",
                    flush=True,
                )
        finally:
            stop.set()
            if writer.is_alive() or writer.exitcode is not None:
                writer.join(30)
        ingested = {
            "rate_asked": args.ingest_rate,
            "jobs": recorded.value,
            "rate_seen": recorded.value / (time.monotonic() - ingest_started),
        }
        print(f"ingest during the reads: {ingested['jobs']:,} jobs, {ingested['rate_seen']:.0f}/s")
        exact = {(r.type, r.status): int(r.jobs) for r in counts.status_counts()}
        with db.engine().connect() as connection:
            truth = {
                (r[0], r[1]): r[2]
                for r in connection.execute(
                    text("SELECT type, status, count(*) FROM jobs GROUP BY 1, 2")
                )
            }
        if exact != truth:
            raise AssertionError(f"status counts {exact} differ from the naive count {truth}")
        for name, call in reads.items():
            plans[name] = []
            for statement in capture(call) if name != "naive" else [NAIVE]:
                plan = explain(statement)
                plans[name].append({"sql": statement, "plan": plan, "indexes": indexes_used(plan)})
    finally:
        if not args.keep_database:
            h.drop_database()

    print(
        f"\n{args.jobs:,} jobs; stats / naive (p50): "
        f"{figures['stats']['p50_ms'] / figures['naive']['p50_ms']:.2f}"
    )
    for name, statements in plans.items():
        for number, item in enumerate(statements, 1):
            sql = " ".join(item["sql"].split())
            print(f"\n[{name} #{number}] {sql[:160]}{'…' if len(sql) > 160 else ''}")
            print(f"  indexes: {', '.join(item['indexes']) or 'none (sequential scan)'}")
            for line in item["plan"][:PLAN_LINES]:
                print(f"  {line}")
    summary = {
        "reads": figures,
        "stats_over_naive_p50": figures["stats"]["p50_ms"] / figures["naive"]["p50_ms"],
        "stats_over_naive_p95": figures["stats"]["p95_ms"] / figures["naive"]["p95_ms"],
        "plans": {
            name: [
                {"sql": item["sql"], "indexes": item["indexes"], "plan": item["plan"][:PLAN_LINES]}
                for item in statements
            ]
            for name, statements in plans.items()
        },
        "seeding": seeding,
        "ingest": ingested,
        "table_bytes": sizes,
        "seconds": time.monotonic() - began,
    }
    h.Record(
        "reporting",
        {
            "jobs": args.jobs,
            "events_per_job": args.events,
            "logs_per_job": args.logs,
            "repeat": args.repeat,
            "ingest_rate": args.ingest_rate,
            "note": args.note,
        },
        summary,
    ).write()


if __name__ == "__main__":
    main()
