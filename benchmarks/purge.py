"""Purge: one retention purge of M old terminal jobs — its duration, rate, the longest
transaction it holds, and what it does to ledger inserts running beside it.

Usage::

    .venv/bin/python -m benchmarks.purge                     # M = 200,000
    .venv/bin/python -m benchmarks.purge --jobs 1000000      # the size the goals are set at (long)
    .venv/bin/python -m benchmarks.purge --jobs 50000 --no-archive --no-inserts

Seeding (``benchmarks/_seed.py``, set-based SQL, not the ledger API): ``--jobs`` terminal
jobs completed between 61 and 31 days ago (the retention is 30 days), each with
``--events`` events (default 10) and ``--logs`` log lines (default 5), plus ``--recent``
jobs of the last 30 days that must survive; then ``VACUUM ANALYZE``.

Measured: one call of :func:`app.ledger.operations.retention.purge` (default batch size,
archive to a temporary directory unless ``--no-archive``, rollups), in process:

- duration and jobs/s;
- the longest transaction, two ways: (1) each batch's duration as the purge reports it
  (``last_batch_seconds`` in the ``between_batches`` callback: one batch is one
  transaction, timed around it, pauses excluded); (2) a monitor thread polling
  ``pg_stat_activity`` every 20 ms on its own connection, keeping for every
  ``(pid, xact_start)`` of the benchmark database's other client backends the last
  ``now() - xact_start`` seen (a lower bound, within one poll), the closing VACUUMs
  (no lock that blocks reads or writes) apart from the transactions;
- unless ``--no-inserts``: a separate process (its own interpreter, so no GIL is
  shared with the purge) calls ``ledger.record_queued`` in a loop as fast as it can, for
  ``--baseline`` seconds before the purge, during the purge, and ``--baseline`` seconds
  after it; the insert rate and p50/p99 latency during the purge against the two
  baselines together, as a ratio (goal ≥ 0.9). With 2 cores the inserter and the purge
  also compete for CPU, so the ratio includes that.

Afterwards it checks the purge left exactly the recent jobs and none of the old ones.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from app import db
from app.ledger.operations import retention
from app.ledger.reads import reports
from benchmarks import _harness as h
from benchmarks import _seed

MONITOR_POLL = 0.02


def inserter(stop: Any, out: Any) -> None:
    """Child process: ``record_queued`` in a loop until ``stop``; sends (start, seconds)."""
    from app.ledger import transitions

    samples: list[tuple[float, float]] = []
    while not stop.is_set():
        started = time.time()
        transitions.record_queued(
            transitions.NewJob(id=uuid.uuid4(), type="bench.insert", payload={"n": 1})
        )
        samples.append((started, time.time() - started))
    out.put(("samples", samples))  # one message at the end


class Monitor(threading.Thread):
    """The longest transaction of other client backends of the benchmark database; the
    purge's closing VACUUMs (which block no reads or writes) kept apart."""

    def __init__(self, exclude: set[int]) -> None:
        super().__init__(daemon=True)
        self.exclude = exclude
        self.longest: dict[tuple[int, str], float] = {}
        self.vacuums: dict[tuple[int, str], float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        engine = create_engine(h.ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            while not self.stopping.is_set():
                rows = connection.execute(
                    text(
                        """
                        SELECT pid, xact_start::text AS started,
                               extract(epoch FROM clock_timestamp() - xact_start) AS held,
                               query ILIKE 'VACUUM%' AS vacuum
                        FROM pg_stat_activity
                        WHERE datname = :d AND backend_type = 'client backend'
                          AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
                        """
                    ),
                    {"d": h.DATABASE},
                ).all()
                for row in rows:
                    if row.pid in self.exclude:
                        continue
                    key = (row.pid, row.started)
                    seen = self.vacuums if row.vacuum else self.longest
                    seen[key] = max(seen.get(key, 0.0), float(row.held))
                time.sleep(MONITOR_POLL)  # the monitor's resolution
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000, help="old terminal jobs seeded")
    parser.add_argument("--recent", type=int, default=20_000, help="recent jobs that stay")
    parser.add_argument("--events", type=int, default=10, help="events per job")
    parser.add_argument("--logs", type=int, default=5, help="log lines per job")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the setting")
    parser.add_argument("--batch-seconds", type=float, default=None, help="default: the setting")
    parser.add_argument("--pause-factor", type=float, default=None, help="default: the setting")
    parser.add_argument("--no-archive", action="store_true", help="purge without archive")
    parser.add_argument("--no-inserts", action="store_true", help="no concurrent inserter")
    parser.add_argument("--baseline", type=float, default=15, help="seconds before and after")
    parser.add_argument("--note", default="", help="free text stored with the results")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()

    h.recreate_database()
    began = time.monotonic()
    context = mp.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    child = None
    try:
        with db.engine().connect() as connection:
            now = reports.database_now(connection)
        print(f"seeding {args.jobs:,} old jobs and {args.recent:,} recent ones", flush=True)
        seeding = _seed.seed(
            args.jobs,
            newest=now - timedelta(days=31),
            span=timedelta(days=30),
            events_per_job=args.events,
            logs_per_job=args.logs,
            live=False,
        )
        if args.recent:
            _seed.seed(
                args.recent,
                newest=now - timedelta(minutes=1),
                span=timedelta(days=29),
                events_per_job=args.events,
                logs_per_job=args.logs,
                live=True,
                say=False,
            )
        sizes_before = _seed.table_sizes()
        db.reset()

        if not args.no_inserts:
            child = context.Process(target=inserter, args=(stop, out), daemon=True)
            child.start()
            time.sleep(3)  # the child imports the application and connects
        inserter_pids = _client_pids()
        monitor = Monitor(exclude=inserter_pids)

        window: dict[str, float] = {"before": time.time()}
        time.sleep(0 if args.no_inserts else args.baseline)
        window["purge_start"] = time.time()
        monitor.start()
        batch_seconds: list[float] = []
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="jobledger-purge-") as folder:
            result = retention.purge(
                batch_size=args.batch_size,
                batch_seconds=args.batch_seconds,
                pause_factor=args.pause_factor,
                archive_dir=None if args.no_archive else Path(folder),
                between_batches=lambda done: batch_seconds.append(done.last_batch_seconds),
            )
            archive_bytes = sum(p.stat().st_size for p in Path(folder).iterdir())
        duration = time.perf_counter() - started
        window["purge_end"] = time.time()
        window["batches_end"] = window["purge_end"] - result.vacuum_seconds  # VACUUM began
        monitor.stopping.set()
        monitor.join(10)
        time.sleep(0 if args.no_inserts else args.baseline)
        window["after"] = time.time()
        samples: list[tuple[float, float]] = []
        if child is not None:
            stop.set()
            _, samples = out.get(timeout=120)
            child.join(30)
        left_old, left_recent = _left(now)
        sizes_after = _seed.table_sizes()
    finally:
        stop.set()
        if child is not None and child.is_alive():
            child.terminate()
            child.join(10)
        if not args.keep_database:
            h.drop_database()

    figures: dict[str, Any] = {
        "duration_s": duration,
        "jobs_per_s": result.deleted / duration,
        "deleted": result.deleted,
        "children_deleted": result.children,
        "batches": result.batches,
        "paused_s": result.paused_seconds,
        "archived": result.archived,
        "archive_bytes": archive_bytes,
        "longest_batch_s": max(batch_seconds, default=0.0),
        "p50_batch_s": h.percentile(batch_seconds, 0.5) if batch_seconds else 0.0,
        "longest_transaction_seen_s": max(monitor.longest.values(), default=0.0),
        "transactions_over_1s": sum(1 for v in monitor.longest.values() if v > 1.0),
        "vacuum_s": result.vacuum_seconds,
        "longest_vacuum_seen_s": max(monitor.vacuums.values(), default=0.0),
        "batches_over_1s": sum(1 for v in batch_seconds if v > 1.0),
        # does a batch get slower as the purge goes (dead index entries ahead of it)?
        "mean_batch_s_first_tenth": _mean(batch_seconds[: max(1, len(batch_seconds) // 10)]),
        "mean_batch_s_last_tenth": _mean(batch_seconds[-max(1, len(batch_seconds) // 10) :]),
        "left_old": left_old,
        "left_recent": left_recent,
        "table_bytes_before": sizes_before,
        "table_bytes_after": sizes_after,
        "seeding": seeding,
        "seconds": time.monotonic() - began,
    }
    print(
        f"\npurge of {result.deleted:,} jobs ({result.batches} batches, archive "
        f"{'off' if args.no_archive else f'{archive_bytes / 1e6:.1f} MB'}): "
        f"{duration:.1f} s ({result.paused_seconds:.1f} s of it paused), "
        f"{figures['jobs_per_s']:.0f} jobs/s"
    )
    print(
        f"longest batch: {figures['longest_batch_s'] * 1000:.0f} ms "
        f"(p50 {figures['p50_batch_s'] * 1000:.0f} ms, {figures['batches_over_1s']} over 1 s); "
        f"longest transaction seen in pg_stat_activity: "
        f"{figures['longest_transaction_seen_s'] * 1000:.0f} ms; closing VACUUM "
        f"{result.vacuum_seconds:.1f} s (longest table {figures['longest_vacuum_seen_s']:.1f} s)"
    )
    print(
        f"mean batch, first tenth {figures['mean_batch_s_first_tenth'] * 1000:.0f} ms, "
        f"last tenth {figures['mean_batch_s_last_tenth'] * 1000:.0f} ms"
    )
    print(f"left after the purge: {left_old} old jobs, {left_recent} recent jobs")
    if samples:
        figures["inserts"] = _inserts(samples, window)
        ins = figures["inserts"]
        print(
            f"record_queued beside it: {ins['without']['per_s']:.0f}/s without "
            f"(p99 {ins['without']['p99_ms']:.1f} ms), {ins['during']['per_s']:.0f}/s during "
            f"(p99 {ins['during']['p99_ms']:.1f} ms): rate ratio {ins['rate_ratio']:.2f}, "
            f"p99 ratio {ins['p99_ratio']:.2f}; during the batches alone "
            f"{ins['batches_rate_ratio']:.2f} (p99 {ins['batches_p99_ratio']:.2f}), during the "
            f"VACUUM {ins['vacuum']['per_s']:.0f}/s (p99 {ins['vacuum']['p99_ms']:.1f} ms)"
        )
    h.Record(
        "purge",
        {
            "jobs": args.jobs,
            "recent": args.recent,
            "events_per_job": args.events,
            "logs_per_job": args.logs,
            "batch_size": args.batch_size or "setting",
            "batch_seconds": "setting" if args.batch_seconds is None else args.batch_seconds,
            "pause_factor": "setting" if args.pause_factor is None else args.pause_factor,
            "archive": not args.no_archive,
            "inserts": not args.no_inserts,
            "baseline_s": args.baseline,
            "note": args.note,
        },
        figures,
    ).write()


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _client_pids() -> set[int]:
    engine = create_engine(h.ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        pids = {
            int(row[0])
            for row in connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d "
                    "AND backend_type = 'client backend'"
                ),
                {"d": h.DATABASE},
            )
        }
    engine.dispose()
    return pids


def _left(now: Any) -> tuple[int, int]:
    with db.engine().connect() as connection:
        old = connection.execute(
            text("SELECT count(*) FROM jobs WHERE completed_at < :c"),
            {"c": now - timedelta(days=30)},
        ).scalar_one()
        recent = connection.execute(
            text("SELECT count(*) FROM jobs WHERE type <> 'bench.insert'")
        ).scalar_one()
    return int(old), int(recent) - int(old)


def _inserts(samples: list[tuple[float, float]], window: dict[str, float]) -> dict[str, Any]:
    def phase(pairs: list[tuple[float, float]], seconds: float) -> dict[str, float]:
        latencies = [s * 1000 for _, s in pairs]
        return {
            "calls": len(pairs),
            "per_s": len(pairs) / seconds if seconds else 0.0,
            "p50_ms": h.percentile(latencies, 0.5) if latencies else 0.0,
            "p99_ms": h.percentile(latencies, 0.99) if latencies else 0.0,
        }

    before = [p for p in samples if window["before"] <= p[0] < window["purge_start"]]
    during = [p for p in samples if window["purge_start"] <= p[0] < window["purge_end"]]
    after = [p for p in samples if window["purge_end"] <= p[0] < window["after"]]
    without_seconds = (window["purge_start"] - window["before"]) + (
        window["after"] - window["purge_end"]
    )
    result = {
        "before": phase(before, window["purge_start"] - window["before"]),
        "during": phase(during, window["purge_end"] - window["purge_start"]),
        "after": phase(after, window["after"] - window["purge_end"]),
        # the purge split: its batches (with pauses), then the closing VACUUM
        "batches": phase(
            [p for p in during if p[0] < window["batches_end"]],
            window["batches_end"] - window["purge_start"],
        ),
        "vacuum": phase(
            [p for p in during if p[0] >= window["batches_end"]],
            window["purge_end"] - window["batches_end"],
        ),
        "without": phase(before + after, without_seconds),
    }
    result["rate_ratio"] = result["during"]["per_s"] / result["without"]["per_s"]
    result["p99_ratio"] = result["during"]["p99_ms"] / result["without"]["p99_ms"]
    result["batches_rate_ratio"] = result["batches"]["per_s"] / result["without"]["per_s"]
    result["batches_p99_ratio"] = result["batches"]["p99_ms"] / result["without"]["p99_ms"]
    return result


if __name__ == "__main__":
    main()
