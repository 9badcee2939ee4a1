"""Issue 17's benchmark runs end to end on a few jobs: real workers for every variant
(plain Celery, the result backend, the ledger and, when installed, Procrastinate), the
enqueue part, the table it prints, and nothing left behind (its databases dropped, its
Redis db's queues gone). Figures are not judged here (no timed assertion): that is the
benchmark's job on a quiet machine (benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import redis
from sqlalchemy import create_engine, text

from app.config import normalize_database_url
from tests.conftest import ADMIN_URL, TEST_DB
from tests.support.processes import ROOT

DATABASE = f"{TEST_DB}_issue17"
#: The benchmark's own Redis db (not the tests'): the run empties it of bench-* queues.
BENCH_REDIS_URL = os.environ.get("JOBLEDGER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def bench_environment() -> dict[str, str]:
    """The tests' environment without its JOBLEDGER_* settings (their task modules and
    per-type limits are not the benchmark's), pointed at a database of the tests' name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    return {
        **env,
        "PYTHONPATH": str(ROOT),
        "JOBLEDGER_BENCH_ADMIN_URL": ADMIN_URL,
        "JOBLEDGER_BENCH_DATABASE": DATABASE,
        "JOBLEDGER_BENCH_REDIS_URL": BENCH_REDIS_URL,
    }


@pytest.mark.timeout(600)
def test_a_short_run_prints_every_ratio_and_leaves_nothing_behind() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.issue17",
            *("--n", "50", "--rounds", "1", "--enqueue-n", "100", "--no-record"),
        ],
        env=bench_environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    number = r"\d+\.\d\d?"
    for label in (
        r"worker: ledger ÷ plain Celery",
        r"worker: ledger ÷ Celery SQLAlchemy result backend",
        r"ledger's added CPU ms/job \(main \+ children \+ PostgreSQL\)",
        r"enqueue \(redis\): ledger delay\(\) ÷ plain delay\(\)",
        r"enqueue \(redis\): apply_many ÷ plain delay\(\) loop",
    ):
        assert re.search(rf"^\| {label} \| -?{number} \| -?{number} \|", out.stdout, re.M), label
    assert re.search(r"^Machine: .*, \d+ cores, [\d.]+ GiB; PostgreSQL \d+", out.stdout, re.M)
    if importlib.util.find_spec("procrastinate") is not None:
        assert re.search(rf"^\| worker: ledger ÷ Procrastinate \| {number} \|", out.stdout, re.M)
        assert re.search(rf"^\| procrastinate \| {number} \|", out.stdout, re.M)
    else:
        assert "Procrastinate is not installed" in out.stdout
    admin = create_engine(normalize_database_url(ADMIN_URL))
    try:
        with admin.connect() as connection:
            left = connection.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :d"),
                {"d": f"{DATABASE}%"},
            ).all()
    finally:
        admin.dispose()
    assert left == []
    assert redis.Redis.from_url(BENCH_REDIS_URL).keys("bench-*") == []
