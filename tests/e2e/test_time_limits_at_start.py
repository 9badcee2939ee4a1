"""A misspelt job type in ``JOBLEDGER_TIME_LIMITS`` stops a real worker and the API at
start, naming it (the settings themselves: tests/unit/test_time_limit_settings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_misspelt_job_type_stops_the_worker_at_start_naming_the_known_ones() -> None:
    environment = {**os.environ, "JOBLEDGER_TIME_LIMITS": '{"exprot": {"hard": 60}}'}
    queue = f"unused-{uuid.uuid4().hex}"  # were it to start, it would take nobody's jobs

    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "app", "worker", "--pool", "solo", "-Q", queue],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert "JOBLEDGER_TIME_LIMITS names job types that do not exist: 'exprot'" in done.stderr
    assert "the job types are: " in done.stderr
    assert "export" in done.stderr


def test_a_misspelt_job_type_stops_the_api_at_start() -> None:
    environment = {**os.environ, "JOBLEDGER_TIME_LIMITS": '{"exprot": {"hard": 60}}'}

    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "app.api.main:app", "--port", "0"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert "JOBLEDGER_TIME_LIMITS names job types that do not exist: 'exprot'" in done.stderr
