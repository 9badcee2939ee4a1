"""Real worker processes: ``python -m celery -A app worker`` started as a subprocess and
waited for until it answers a ping (or, on a broker this process does not talk to, until
its log says it is ready).

The one launcher of the project: its tests (``tests/support/processes.py``,
``tests/support/faults.py``), its benchmarks (``benchmarks/_harness.py``) and the
user-facing pytest plugin (:mod:`app.testing.pytest_plugin`) all start workers here.
Celery is imported only when a worker is pinged or inspected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

#: What follows ``python`` to run a worker of the project's app (``… worker`` is added).
CELERY_APP = ("-m", "celery", "-A", "app")


@dataclass
class WorkerProcess:
    """A running worker: its node name, process and log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        """PIDs of the prefork pool children."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not go in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        for pid in [*self.children(), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)

    def is_idle(self) -> bool:
        """True when the worker runs and holds no task (nothing active, nothing reserved)."""
        from app.celery import app

        inspect = app.control.inspect(destination=[self.name], timeout=1.0, limit=1)
        for held in (inspect.active(), inspect.reserved()):
            if held is None or any(held.values()):
                return False
        return True

    def wait_until_idle(self, timeout: float = 10) -> bool:
        """Wait (up to ``timeout``) until the worker holds no task; False if it still does."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if self.is_idle():
                return True
        return self.process.poll() is not None

    def consume(self, queue: str) -> None:
        """Start consuming ``queue`` too (``add_consumer``), answered by the worker."""
        from app.celery import app

        reply = app.control.add_consumer(queue, destination=[self.name], reply=True, timeout=5)
        if not reply:
            raise RuntimeError(f"worker {self.name} did not take queue {queue}")


def start_worker(
    log_dir: Path,
    *,
    concurrency: int = 2,
    queues: Sequence[str] = (),
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    program: Sequence[str] = CELERY_APP,
    loglevel: str = "INFO",
    prefix: str = "worker",
    ready: Literal["ping", "log"] = "ping",
    timeout: float = 60,
    wrapper: Sequence[str] = (),
) -> WorkerProcess:
    """Start a prefork worker and wait until it is ready.

    ``queues``: consume these only (default: the app's default queue). ``env``: the whole
    environment of the worker (default: this process's). ``program``: what follows
    ``python`` before ``worker`` (default ``-m celery -A app``; a module that calls
    ``app.worker_main`` works too). ``ready="log"`` waits for the log's ``ready.`` line
    instead of a ping: for a worker on a broker this process's app does not use.
    ``wrapper``: a command prefix that runs the worker elsewhere and then execs it (``ip
    netns exec NS``: a worker "host" of its own, tests/support/netns.py).
    Raises ``RuntimeError`` with the worker's log if it exits or is not ready in time.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name.split('@')[0]}.log"
    command = [*wrapper, sys.executable, *program, "worker"]
    command += ["-P", "prefork", "-c", str(concurrency)]
    command += ["-n", name, f"--loglevel={loglevel}", "--without-mingle", "--without-gossip"]
    if queues:
        command += ["-Q", ",".join(queues)]
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [*command, *extra],
            cwd=cwd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(os.environ if env is None else env),
        )
    worker = WorkerProcess(name=name, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{worker.log()}")
        if _is_ready(worker, ready):
            return worker
        if ready == "log":
            time.sleep(0.05)  # polling interval of the check (a ping waits by itself)
    worker.kill()
    raise RuntimeError(f"worker was not ready within {timeout} s:\n{worker.log()}")


def _is_ready(worker: WorkerProcess, ready: Literal["ping", "log"]) -> bool:
    if ready == "log":
        return f"{worker.name} ready." in worker.log()
    from app.celery import app

    return bool(app.control.ping(destination=[worker.name], timeout=0.5))
