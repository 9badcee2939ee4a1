"""The embedded default: no server at all (SQLite ledger, filesystem broker).

Producer, migration and worker are separate processes with the ``JOBLEDGER_*`` variables
unset, as on a laptop, working in a scratch folder (``./var`` there holds both).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def embedded_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_EXTRA_TASK_MODULES"] = "tests.support.jobs"
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_a_job_runs_end_to_end_with_no_server(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    jobledger = str(Path(sys.executable).parent / "jobledger")
    subprocess.run([jobledger, "migrate"], cwd=tmp_path, env=env, check=True, timeout=120)
    produced = subprocess.run(
        [sys.executable, "-c", "from tests.support.jobs import echo; print(echo.delay(41).id)"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    job_id = produced.stdout.strip().replace("-", "")
    database = tmp_path / "var" / "jobledger.sqlite3"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "app", "worker", "-P", "solo", "--loglevel=INFO"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status = _wait_for_terminal(database, job_id)
    finally:
        worker.terminate()
        worker.wait(30)
    assert status == "succeeded"
    with sqlite3.connect(database) as connection:
        history = connection.execute(
            "SELECT from_status, to_status FROM job_events WHERE job_id = ? ORDER BY id",
            (job_id,),
        ).fetchall()
    assert history == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


def _wait_for_terminal(database: Path, job_id: str, timeout: float = 60) -> str | None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as connection:
            row = connection.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        status = None if row is None else row[0]
        if status in ("succeeded", "failed", "canceled", "partial"):
            return status
        time.sleep(0.2)  # polling interval of the check; the filesystem broker polls at 1 s
    return status
