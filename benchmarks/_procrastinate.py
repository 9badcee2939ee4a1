"""The peer of issue 17's comparison: Procrastinate (a PostgreSQL-native task queue with
job history), an optional benchmark dependency (``pip install -e '.[bench]'``).

Its App, on its own database (``JOBLEDGER_BENCH_PROCRASTINATE_DSN``, a libpq URL; made,
given Procrastinate's schema and dropped by :mod:`benchmarks.issue17`), and one no-op
task. :func:`main` is the benchmark's worker process (started by
:func:`benchmarks.issue17.measure_procrastinate`, which imports this module rather than
running it as ``__main__``, where Procrastinate warns about an App)::

    python -c 'from benchmarks._procrastinate import main; main()' WARM RUN CONCURRENCY

It drains ``WARM`` first (connections opened, code warm, as a Celery variant's worker
drains its warm-up queue), prints ``ready``, waits for a line on stdin, then drains
``RUN`` with ``wait=False`` (the worker returns once it has caught up with the queue:
every job deferred before was run), prints one JSON line (the drain's seconds and the
CPU seconds this process used during it) and keeps its connections open until the next
line on stdin, so that the caller reads the CPU of the process and of its backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import procrastinate

DSN = os.environ.get(
    "JOBLEDGER_BENCH_PROCRASTINATE_DSN",
    "postgresql://postgres@127.0.0.1:5432/jobledger_bench_procrastinate",
)

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))


@app.task(name="bench.procrastinate_noop")
async def noop() -> None:
    """Nothing: the cost of Procrastinate alone (an async task: no thread per job)."""


async def drain(queue: str, concurrency: int) -> None:
    await app.run_worker_async(
        queues=[queue], concurrency=concurrency, wait=False, install_signal_handlers=False
    )


async def serve(warm: str, run: str, concurrency: int) -> None:
    async with app.open_async():
        await drain(warm, concurrency)
        print("ready", flush=True)
        sys.stdin.readline()
        cpu, started = time.process_time(), time.monotonic()
        await drain(run, concurrency)
        seconds = time.monotonic() - started
        print(json.dumps({"seconds": seconds, "cpu_s": time.process_time() - cpu}), flush=True)
        sys.stdin.readline()


def main() -> None:
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
