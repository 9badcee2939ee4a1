"""Support for the fault tests: private PostgreSQL and Redis servers the test may restart,
workers with chosen broker transport options, and a job that tells which process runs it.

The shared PostgreSQL (5432) and Redis (6379) serve every other test run on this machine:
the fault tests never restart them. A test that restarts a server starts its own
(:class:`PrivatePostgres`, :class:`PrivateRedis`) on a free port and points its worker
subprocess (and, for the duration of the test, this process) at it.

Workers are started through :mod:`tests.support.fault_worker`, which can set broker
transport options the application has no setting for.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from app import db
from app.config import settings
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from app.testing.workers import WorkerProcess, start_worker
from tests.support.jobs import gate_key, gate_redis
from tests.support.processes import ROOT

PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: Task modules a fault-test worker registers (the examples and :func:`hold`).
TASK_MODULES = "tests.support.jobs,tests.support.faults"


class HoldPayload(JobPayload):
    gate: str


# Started eagerly (lazy_start=False): its tests check `running` (or a cancel intent, a
# lost execution) the moment the body announces itself at its gate.
@job_task("fault.hold", HoldPayload, lazy_start=False)
def hold(job: JobContext, payload: HoldPayload) -> dict[str, int]:
    """Announce ``"<attempt>:<pid>"`` on ``<gate>:at``, then wait for one token on the
    gate: the test knows exactly which pool process runs the job, and when."""
    client = gate_redis()
    client.rpush(gate_key(payload.gate) + ":at", f"{job.attempt}:{os.getpid()}")
    while client.blpop([gate_key(payload.gate)], timeout=1) is None:
        job.check_canceled()
    return {"attempt": job.attempt}


def wait_announced(client: redis.Redis, gate: str, timeout: float = 60) -> tuple[int, int]:
    """``(attempt, pid)`` of the next execution of a :func:`hold` job that reached its gate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # short blocking reads: a long one can outlast the client's socket timeout
        found = client.blpop([gate_key(gate) + ":at"], timeout=1)
        if found is not None:
            attempt, pid = found[1].decode().split(":")
            return int(attempt), int(pid)
    raise AssertionError(f"held job {gate} did not reach its gate within {timeout}s")


def next_announcement(
    client: redis.Redis, gates: list[str], timeout: float = 60
) -> tuple[str, int, int]:
    """``(gate, attempt, pid)`` of the next :func:`hold` execution to reach any of ``gates``."""
    keys = {gate_key(gate) + ":at": gate for gate in gates}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = client.blpop(list(keys), timeout=1)
        if found is not None:
            attempt, pid = found[1].decode().split(":")
            return keys[found[0].decode()], int(attempt), int(pid)
    raise AssertionError(f"no held job reached its gate within {timeout}s")


def release(client: redis.Redis, gate: str, tokens: int = 1) -> None:
    client.rpush(gate_key(gate), *range(tokens))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Any, timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``condition()`` until it returns something truthy (or fail saying ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"{what} not reached after {timeout}s")


class PrivatePostgres:
    """A throwaway PostgreSQL 15 cluster owned by the test (run as the ``postgres`` user)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="jobledger-pg-"))
        shutil.chown(self.directory, "postgres", "postgres")
        self.data = self.directory / "data"
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        log = str(self.directory / "server.log")
        self._pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


class PrivateRedis:
    """A throwaway ``redis-server`` owned by the test; ``persistent`` turns on the AOF
    with an fsync per write (what a broker must do to keep queued messages over a
    restart)."""

    def __init__(self, *, persistent: bool) -> None:
        self.port = free_port()
        self.persistent = persistent
        self.directory = Path(tempfile.mkdtemp(prefix="jobledger-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.directory),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 30, "private redis up")

    def stop(self) -> None:
        """Stop the server as a restart would (SIGTERM; with the AOF on, it is kept)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextlib.contextmanager
def ledger_at(database_url: str) -> Iterator[None]:
    """Point this process's ledger at ``database_url`` for the ``with`` block."""
    previous = os.environ["JOBLEDGER_DATABASE_URL"]
    os.environ["JOBLEDGER_DATABASE_URL"] = database_url
    settings.cache_clear()
    db.reset()
    try:
        yield
    finally:
        os.environ["JOBLEDGER_DATABASE_URL"] = previous
        settings.cache_clear()
        db.reset()


def start_fault_worker(
    log_dir: Path,
    queue: str,
    *,
    concurrency: int = 2,
    env: dict[str, str] | None = None,
    transport_options: dict[str, Any] | None = None,
    wrapper: tuple[str, ...] = (),
    prefix: str = "fault",
) -> WorkerProcess:
    """Start a real prefork worker of ``app`` on ``queue`` with environment overrides
    (its own database or broker) and wait until its log says it is ready (its broker may
    be a private one, and a broadcast always goes out through this process's broker).
    ``wrapper`` runs it on a host of its own (:meth:`tests.support.netns.Host.wrapper`)."""
    environment = {
        **os.environ,
        "JOBLEDGER_EXTRA_TASK_MODULES": TASK_MODULES,
        "JOBLEDGER_TEST_TRANSPORT_OPTIONS": json.dumps(transport_options or {}),
        **(env or {}),
    }
    return start_worker(
        log_dir,
        concurrency=concurrency,
        queues=(queue,),
        env=environment,
        cwd=ROOT,
        program=("-m", "tests.support.fault_worker"),
        prefix=prefix,
        ready="log",
        wrapper=wrapper,
    )
