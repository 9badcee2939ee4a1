"""Enqueue rate: what recording a job at publish costs a producer, and the bulk path.

Usage::

    .venv/bin/python -m benchmarks.enqueue                 # N = 5,000 per variant, 3 rounds
    .venv/bin/python -m benchmarks.enqueue --n 20000 --batch 1000

Variants, alternated each round, medians over the rounds (no worker runs: only the
producer is measured, the queues are emptied after each measurement):

- **plain**: ``bench.plain.apply_async()`` — Celery alone;
- **ledger**: ``bench.noop.apply_async()`` — one ledger statement, then the publish;
- **bulk**: ``bench.noop.apply_many(...)`` in batches of ``--batch`` — one transaction
  per batch (one statement on PostgreSQL), then the publishes over one producer.

Uses its own database (``jobledger_bench_enqueue``) and Redis db 13 unless
``JOBLEDGER_BENCH_DATABASE`` / ``JOBLEDGER_BENCH_REDIS_URL`` say otherwise; on RabbitMQ
with ``JOBLEDGER_BENCH_BROKER_URL=amqp://…`` (the queue is purged after each measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import os

os.environ.setdefault("JOBLEDGER_BENCH_DATABASE", "jobledger_bench_enqueue")
os.environ.setdefault("JOBLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

import time

from amqp.exceptions import NotFound
from kombu.connection import Connection
from sqlalchemy import text

from app import brokers, db
from benchmarks import _harness as h
from benchmarks._tasks import noop, plain

QUEUE = "bench-enqueue"


def clear(queue: str) -> None:
    """Empty the benchmark's queue: its Redis db, or the queue on RabbitMQ."""
    h.clear_broker()
    if brokers.kind(h.BROKER_URL) == "rabbitmq":
        with Connection(h.BROKER_URL) as connection, contextlib.suppress(NotFound):  # type: ignore[no-untyped-call]
            connection.channel().queue_purge(queue)  # NotFound: not declared yet


def measure(variant: str, count: int, batch: int) -> float:
    """Jobs per second enqueued by one variant."""
    clear(QUEUE)
    with db.engine().begin() as connection:
        connection.execute(text("TRUNCATE jobs, job_events, run_name_counters CASCADE"))
    queue = QUEUE
    started = time.perf_counter()
    if variant == "plain":
        for _ in range(count):
            plain.apply_async(queue=queue)
    elif variant == "ledger":
        for _ in range(count):
            noop.apply_async(queue=queue)
    else:
        for first in range(0, count, batch):
            noop.apply_many([{}] * min(batch, count - first), queue=queue)
    elapsed = time.perf_counter() - started
    if variant != "plain":
        with db.engine().connect() as connection:
            recorded = connection.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        assert recorded == count, f"{variant}: {recorded} jobs recorded of {count}"
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="jobs per apply_many call")
    args = parser.parse_args()
    h.recreate_database()
    rates: dict[str, list[float]] = {"plain": [], "ledger": [], "bulk": []}
    try:
        for number in range(1, args.rounds + 1):
            for variant in rates:
                rates[variant].append(measure(variant, args.n, args.batch))
                print(f"round {number} {variant:6}: {rates[variant][-1]:8.1f} jobs/s", flush=True)
    finally:
        clear(QUEUE)
        h.drop_database()
    medians = {variant: h.median(values) for variant, values in rates.items()}
    figures = {
        "enqueue_per_s": medians,
        "ledger_over_plain": medians["ledger"] / medians["plain"],
        "bulk_over_plain": medians["bulk"] / medians["plain"],
        "rounds": rates,
    }
    print(f"\nN = {args.n}, batch {args.batch}, {args.rounds} rounds, medians (jobs/s):")
    for variant, value in medians.items():
        print(f"  {variant:6} {value:8.1f}")
    print(f"ledger / plain: {figures['ledger_over_plain']:.2f}")
    print(f"bulk / plain:   {figures['bulk_over_plain']:.2f}")
    record = h.Record("enqueue", vars(args), figures)
    record.write()


if __name__ == "__main__":
    main()
