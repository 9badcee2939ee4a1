"""Bloat: 35 days of constant volume with a daily purge, in a few minutes. Does the ledger
stay the same size and take inserts at the same rate once retention is in balance?

Usage::

    .venv/bin/python -m benchmarks.bloat                  # 5,000 jobs/day, 35 days
    .venv/bin/python -m benchmarks.bloat --per-day 2000 --days 10

Day 0: the ledger already holds ``--retention`` (30) days of jobs (``--per-day`` a day,
``--events`` events and ``--logs`` log lines each, bulk-seeded, indexes built, vacuumed):
retention is in balance from the first simulated day. Then, for each day ``d`` of
``--days``, in this order, with the clock of day ``d`` being ``now - (days - d)`` days:

1. that day's jobs arrive: ``--per-day`` jobs inserted set-based into the live indexes
   (``benchmarks/_seed.py`` with ``bulk=False``: no index rebuild, no VACUUM; autovacuum
   works as it would);
2. ``--sample`` further jobs go through the real ledger path (``record_queued``,
   ``record_started``, ``record_finished``: three statements each), timed: the **insert
   rate** of that day; they are then dated back to the middle of day ``d`` so the purge
   takes them 30 days later like the rest;
3. the daily purge (:func:`app.ledger.operations.retention.purge` with the cutoff of day ``d``, the
   default batch size, no archive), then the settle of the status counts (as beat runs
   them);
4. the size of ``jobs``, ``job_events``, ``job_logs`` and ``job_status_counts``
   (``pg_total_relation_size``: heap, indexes, TOAST).

Printed per day and as the ratios day ``--days`` / day 1 (goals: size ≤ 1.25x, insert
rate ≥ 0.9x), with how often autovacuum ran on each table. Time is compressed (a day in
a few seconds), so autovacuum gets fewer chances per simulated day than in real life:
if anything, bloat is overstated here.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.ledger import transitions as ledger
from app.ledger.operations.retention import purge
from app.ledger.reads import counts, reports
from benchmarks import _harness as h
from benchmarks import _seed

TABLES = (*_seed.TABLES, "job_status_counts")


def sizes() -> dict[str, int]:
    with db.engine().connect() as connection:
        return {
            table: int(
                connection.execute(
                    text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                ).scalar_one()
            )
            for table in TABLES
        }


def autovacuums() -> dict[str, int]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT relname, autovacuum_count FROM pg_stat_user_tables WHERE relname = ANY(:t)"
            ),
            {"t": list(TABLES)},
        )
        return {row[0]: int(row[1]) for row in rows}


def insert_rate(sample: int, age: timedelta) -> float:
    """Jobs per second through the three per-job ledger statements; then dated back."""
    ids = [uuid.uuid4() for _ in range(sample)]
    started = time.perf_counter()
    for job_id in ids:
        ledger.record_queued(
            ledger.NewJob(
                id=job_id,
                type="bench.bloat",
                payload={},
                subject="bloat",
                celery_task_id=str(job_id),
            )
        )
        ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e", worker="w")
        ledger.record_finished(job_id, execution_id="e", result=None)
    rate = sample / (time.perf_counter() - started)
    with db.engine().begin() as connection:
        connection.execute(
            text(
                "UPDATE jobs SET created_at = created_at - :d, started_at = started_at - :d, "
                "completed_at = completed_at - :d, updated_at = updated_at - :d "
                "WHERE id = ANY(:ids)"
            ),
            {"d": age, "ids": ids},
        )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-day", type=int, default=5000, help="jobs per simulated day")
    parser.add_argument("--days", type=int, default=35, help="simulated days")
    parser.add_argument("--retention", type=int, default=30, help="retention in days")
    parser.add_argument("--events", type=int, default=10, help="events per job")
    parser.add_argument("--logs", type=int, default=5, help="log lines per job")
    parser.add_argument("--sample", type=int, default=500, help="timed real-path jobs per day")
    parser.add_argument("--note", default="", help="free text stored with the results")
    args = parser.parse_args()

    h.recreate_database()
    days: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        with db.engine().connect() as connection:
            now = reports.database_now(connection)
        print(f"day 0: {args.retention} days of {args.per_day:,} jobs", flush=True)
        _seed.seed(
            args.per_day * args.retention,
            newest=now - timedelta(days=args.days),
            span=timedelta(days=args.retention),
            events_per_job=args.events,
            logs_per_job=args.logs,
            live=False,
            say=False,
        )
        counts.settle()
        for day in range(1, args.days + 1):
            back = timedelta(days=args.days - day)
            _seed.seed(
                args.per_day,
                newest=now - back,
                span=timedelta(days=1),
                events_per_job=args.events,
                logs_per_job=args.logs,
                live=False,
                say=False,
                bulk=False,
            )
            # dated to the middle of day d: inside the range already seeded for that day
            rate = insert_rate(args.sample, back + timedelta(hours=12))
            purged_at = time.monotonic()
            result = purge(older_than_days=args.retention + back.days)
            purge_s = time.monotonic() - purged_at
            counts.settle()
            measured = sizes()
            days.append(
                {
                    "day": day,
                    "insert_per_s": rate,
                    "purged": result.deleted,
                    "purge_s": purge_s,
                    "bytes": measured,
                    "total_bytes": sum(measured.values()),
                }
            )
            print(
                f"day {day:2}: {sum(measured.values()) / 2**20:8.1f} MiB, "
                f"insert {rate:6.0f} jobs/s, purged {result.deleted:,} in {purge_s:.1f} s",
                flush=True,
            )
        vacuumed = autovacuums()
        with db.engine().connect() as connection:
            held = int(connection.execute(text("SELECT count(*) FROM jobs")).scalar_one())
    finally:
        h.drop_database()

    first, last = days[0], days[-1]
    summary = {
        "size_ratio": last["total_bytes"] / first["total_bytes"],
        "insert_rate_ratio": last["insert_per_s"] / first["insert_per_s"],
        "first_day": first,
        "last_day": last,
        "days": days,
        "autovacuum_count": vacuumed,
        "jobs_held_at_end": held,
        "seconds": time.monotonic() - began,
    }
    print(
        f"\nday {last['day']} / day 1: size {summary['size_ratio']:.3f}x "
        f"(goal <= 1.25), insert rate {summary['insert_rate_ratio']:.3f}x (goal >= 0.9); "
        f"jobs held at the end {held:,}; autovacuum runs {vacuumed}"
    )
    h.Record(
        "bloat",
        {
            "per_day": args.per_day,
            "days": args.days,
            "retention": args.retention,
            "events_per_job": args.events,
            "logs_per_job": args.logs,
            "sample": args.sample,
            "note": args.note,
        },
        summary,
    ).write()


if __name__ == "__main__":
    main()
