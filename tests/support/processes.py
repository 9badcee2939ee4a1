"""Real ``celery -A app worker`` processes for the tests, started by the project's one
launcher (:mod:`app.testing.workers`) and remembered for the per-test clean-up."""

from __future__ import annotations

import os
from pathlib import Path

from app.testing.workers import WorkerProcess
from app.testing.workers import start_worker as launch

__all__ = ["ROOT", "STARTED", "WorkerProcess", "register_in_subprocesses", "start_worker"]

ROOT = Path(__file__).resolve().parents[2]

#: Every worker these tests started; the per-test clean-up waits for the live ones.
STARTED: list[WorkerProcess] = []


def register_in_subprocesses(module: str) -> None:
    """Add ``module`` to ``JOBLEDGER_EXTRA_TASK_MODULES``, so that every worker started
    afterwards registers its job types (test modules that define some call it when
    imported, at collection)."""
    current = [n for n in os.environ.get("JOBLEDGER_EXTRA_TASK_MODULES", "").split(",") if n]
    os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = ",".join(dict.fromkeys([*current, module]))


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
    variables = dict(os.environ if env is None else env)
    if cwd != ROOT:
        variables["PYTHONPATH"] = str(ROOT)
    worker = launch(
        log_dir,
        concurrency=concurrency,
        queues=() if queue is None else (queue,),
        extra=extra,
        env=variables,
        cwd=cwd,
        prefix="test",
    )
    STARTED.append(worker)
    return worker
