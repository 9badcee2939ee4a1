"""Real ``celery -A app worker`` processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.celery import app

ROOT = Path(__file__).resolve().parents[2]


#: Every worker these tests started; the per-test clean-up waits for the live ones.
STARTED: list[WorkerProcess] = []


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

    def is_idle(self) -> bool:
        """True when the worker runs and holds no task (nothing active, nothing reserved)."""
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

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children) at once."""
        for pid in [*self.children(), self.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


def start_worker(
    log_dir: Path,
    concurrency: int = 2,
    queue: str | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> WorkerProcess:
    """Start a prefork worker (consuming ``queue`` only, if given) and wait until it
    answers a ping. ``env`` replaces the test session's environment; with a ``cwd``
    elsewhere, ``PYTHONPATH`` names this checkout so the worker imports its code."""
    if queue is not None:
        extra = ("-Q", queue, *extra)
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    log_path = log_dir / f"{name.split('@')[0]}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-n",
            name,
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            *extra,
        ],
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=_environment(env, cwd),
    )
    worker = WorkerProcess(
        name=name.replace("%h", os.uname().nodename), process=process, log_path=log_path
    )
    STARTED.append(worker)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}:\n{worker.log()}")
        if app.control.ping(destination=[worker.name], timeout=0.5):
            return worker
    worker.kill()
    raise RuntimeError(f"worker did not answer a ping within 60 s:\n{worker.log()}")


def _environment(env: dict[str, str] | None, cwd: Path) -> dict[str, str]:
    variables = dict(os.environ if env is None else env)
    if cwd != ROOT:
        variables["PYTHONPATH"] = str(ROOT)
    return variables
