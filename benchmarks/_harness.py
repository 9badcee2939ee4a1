"""What every benchmark shares: its own database and Redis db, real worker subprocesses,
PostgreSQL's commit counter, and JSON-lines output.

Import this module **before** anything from ``app``: settings are read from the
environment once per process, so the benchmark's database and broker are put into the
environment here, at import time (override with ``JOBLEDGER_BENCH_DATABASE``,
``JOBLEDGER_BENCH_ADMIN_URL``, ``JOBLEDGER_BENCH_REDIS_URL`` and, for benchmarks/hosts.py,
``JOBLEDGER_BENCH_BROKER_URL``).

Workers are real ``celery -A app worker`` processes started by the project's one
launcher, :mod:`app.testing.workers`, as the tests' are (prefork, ``-c 2``, prefetch 16 by
default, the same settings for every variant) started on a warm-up queue; a benchmark
fills its run queue first and then tells the worker to consume it
(:meth:`Worker.consume`), so the timed part is the worker draining a full queue, not the
producer feeding it. A run is over when the run queue is empty and Redis holds no
unacknowledged message (acks are late: a message is acknowledged after its task, and its
ledger write, finished), which is read from Redis without touching the worker.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: A plain ``postgresql://`` URL means psycopg2, as everywhere in jobledger (SQLAlchemy 2.1
#: would pick psycopg 3, which only the optional Procrastinate benchmark installs).
ADMIN_URL = normalize_database_url(
    os.environ.get(
        "JOBLEDGER_BENCH_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )
)
DATABASE = os.environ.get("JOBLEDGER_BENCH_DATABASE", "jobledger_bench")
DATABASE_URL = ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
REDIS_URL = os.environ.get("JOBLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
#: The broker of the benchmark's processes: its Redis db, unless a benchmark that does not
#: read Redis itself (benchmarks/hosts.py) is pointed at RabbitMQ.
BROKER_URL = os.environ.get("JOBLEDGER_BENCH_BROKER_URL", REDIS_URL)
#: Messages each pool process reserves ahead, for every variant alike.
PREFETCH = int(os.environ.get("JOBLEDGER_BENCH_PREFETCH", "16"))
CONCURRENCY = int(os.environ.get("JOBLEDGER_BENCH_CONCURRENCY", "2"))

os.environ["JOBLEDGER_DATABASE_URL"] = DATABASE_URL
os.environ["JOBLEDGER_BROKER_URL"] = BROKER_URL
os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = "benchmarks._tasks"
os.environ["JOBLEDGER_PREFETCH_MULTIPLIER"] = str(PREFETCH)

import redis  # noqa: E402
from kombu import Connection  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app import db  # noqa: E402
from app.queues import redis_keys, waiting  # noqa: E402
from app.testing import databases, workers  # noqa: E402
from app.testing.databases import migrated_ledger  # noqa: E402
from app.testing.workers import WorkerProcess  # noqa: E402

#: The result backend of variant b: Celery's own SQLAlchemy backend, same PostgreSQL.
RESULT_BACKEND = "db+" + DATABASE_URL


def redis_client() -> redis.Redis:
    """A client of the benchmark's own Redis db (never another one)."""
    return redis.Redis.from_url(REDIS_URL)


def recreate_database() -> None:
    """Drop and create the benchmark database, then migrate it to head."""
    db.reset()
    migrated_ledger(ADMIN_URL, DATABASE)


def drop_database() -> None:
    """Drop the benchmark database (its disk space is the point)."""
    db.reset()
    databases.drop_database(ADMIN_URL, DATABASE)


def clear_broker() -> None:
    """Empty the benchmark's Redis db of queues and reserved messages (db 11 only)."""
    client = redis_client()
    keys = [*client.keys("bench-*"), "unacked", "unacked_index", *redis_keys()]
    client.delete(*keys)


def is_redis() -> bool:
    """The benchmark's broker is Redis (not RabbitMQ)."""
    return BROKER_URL.startswith(("redis://", "rediss://"))


def delete_queues(*names: str) -> None:
    """Remove a measurement's queues from the broker (on Redis: every queue and
    reservation of the benchmark's db, :func:`clear_broker`)."""
    if is_redis():
        clear_broker()
        return
    with Connection(BROKER_URL, connect_timeout=5) as connection:
        for name in names:
            connection.default_channel.queue_delete(name)


def commits() -> int:
    """Committed transactions of the benchmark database so far, once PostgreSQL has
    flushed every backend's counters (they arrive up to a few seconds late; closed
    connections flush at exit). Read from the admin database so that reading does not
    count."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    previous = -1
    try:
        with admin.connect() as connection:
            for _ in range(100):
                connection.execute(text("SELECT pg_stat_clear_snapshot()"))
                value = int(
                    connection.execute(
                        text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"),
                        {"d": DATABASE},
                    ).scalar_one()
                )
                if value == previous:
                    return value
                previous = value
                time.sleep(0.6)  # waiting for the statistics collector, not for work
    finally:
        admin.dispose()
    return previous


#: A benchmark worker: the project's one worker process type (app/testing/workers.py).
Worker = WorkerProcess


def start_worker(
    warm_queue: str, *, env: dict[str, str] | None = None, concurrency: int = CONCURRENCY
) -> Worker:
    """Start ``celery -A app worker`` on ``warm_queue`` and wait until it answers a ping."""
    return workers.start_worker(
        RESULTS / "logs",
        concurrency=concurrency,
        queues=(warm_queue,),
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        loglevel="WARNING",
        prefix="bench",
    )


@contextmanager
def running_worker(
    warm_queue: str, *, env: dict[str, str] | None = None, concurrency: int = CONCURRENCY
) -> Iterator[Worker]:
    """A worker for the duration of a ``with`` block, stopped (warm) at its end."""
    worker = start_worker(warm_queue, env=env, concurrency=concurrency)
    try:
        yield worker
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)


def drained(client: redis.Redis, queue: str) -> bool:
    """No message of ``queue`` waits or is reserved: every task ran and was acknowledged."""
    return waiting(client, queue) == 0 and client.hlen("unacked") == 0


def wait_drained(queue: str, timeout: float = 900, poll: float = 0.01) -> float:
    """Poll Redis until ``queue`` is drained; the monotonic time it was first seen so."""
    client = redis_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if drained(client, queue):
            return time.monotonic()
        time.sleep(poll)  # polling interval of the check
    raise TimeoutError(f"queue {queue} not drained after {timeout}s")


def publish(send: Callable[[], Any], count: int) -> float:
    """Call ``send`` ``count`` times; the seconds it took."""
    started = time.perf_counter()
    for _ in range(count):
        send()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Record:
    """One benchmark's figures, printed and appended to ``results/<benchmark>.jsonl``."""

    benchmark: str
    parameters: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / f"{self.benchmark}.jsonl"
        document = {
            "benchmark": self.benchmark,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "git": git_revision(),
            "parameters": self.parameters,
            "figures": self.figures,
        }
        with target.open("a") as handle:
            handle.write(json.dumps(document, sort_keys=True) + "\n")
        print(f"appended to {target.relative_to(ROOT)}")
        return target


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    found = {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2),
        "postgresql": _server_version(),
        "redis": str(redis_client().info("server")["redis_version"]),
    }
    if not is_redis():
        found["rabbitmq"] = rabbitmq_version()
    return found


def cpu_model() -> str:
    """The processor's ``model name`` in ``/proc/cpuinfo`` (empty when it has none)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return ""


def rabbitmq_version(url: str | None = None) -> str:
    """The version RabbitMQ announces on connecting (``url``: the benchmark's broker)."""
    with Connection(url or BROKER_URL, connect_timeout=5) as connection:
        connection.connect()
        version = connection.connection.server_properties.get("version", b"")
    return version.decode() if isinstance(version, bytes) else str(version)


def _server_version() -> str:
    admin = create_engine(ADMIN_URL)
    try:
        with admin.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar_one())
    finally:
        admin.dispose()


def git_revision() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.strip()
