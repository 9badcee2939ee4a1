"""Health: ``/healthz`` and ``/readyz`` of a real API server (with the ledger or the broker
really unreachable), and ``python -m app.health`` against a real worker and the beat lease."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.ledger.runtime.beat import LEASE_NAME, Lease
from app.testing.workers import WorkerProcess
from tests.support.api_server import free_port, start_api_server
from tests.support.processes import ROOT


def health(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -m app.health …`` as a compose healthcheck runs it."""
    return subprocess.run(
        [sys.executable, "-m", "app.health", *arguments],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probe(tmp_path: Path, **environment: str) -> tuple[httpx.Response, httpx.Response]:
    """``/healthz`` and ``/readyz`` of a server started with ``environment``."""
    server = start_api_server(tmp_path, **environment)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            return client.get("/healthz"), client.get("/readyz")
    finally:
        server.stop()


def test_with_ledger_and_broker_up_the_api_is_live_and_ready(tmp_path: Path) -> None:
    live, ready = probe(tmp_path)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"ledger": "ok", "broker": "ok"}}


def test_an_unreachable_broker_is_named_by_readyz_while_healthz_answers(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    live, ready = probe(tmp_path, JOBLEDGER_BROKER_URL=nowhere)
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["ledger"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")
    assert "127.0.0.1" not in str(body)  # names the dependency, not where it lives


def test_an_unreachable_ledger_is_named_by_readyz_while_healthz_answers(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/jobledger"
    live, ready = probe(tmp_path, JOBLEDGER_DATABASE_URL=nowhere)
    assert live.status_code == 200
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["broker"] == "ok"
    assert checks["ledger"].startswith("unreachable")


def test_the_worker_check_passes_for_a_running_worker_and_fails_for_a_missing_one(
    worker: WorkerProcess,
) -> None:
    answered = health("worker", "--node", worker.name)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert answered.stdout.strip() == "worker: healthy"
    missing = health("worker", "--node", "celery@no-such-host", "--timeout", "1")
    assert missing.returncode == 1
    assert "celery@no-such-host did not answer" in missing.stdout


def test_the_beat_check_follows_the_lease() -> None:
    never = health("beat")
    assert never.returncode == 1
    assert "no beat ever held the lease" in never.stdout
    assert Lease(LEASE_NAME, holder="beat-under-test", seconds=60).hold()
    held = health("beat")
    assert held.returncode == 0, held.stdout + held.stderr
    assert held.stdout.strip() == "beat: healthy"
    # renewed for a tenth of a second, then never again (a hung beat): once a whole lease
    # (JOBLEDGER_BEAT_LEASE_SECONDS) has passed since it lapsed, the check fails
    assert Lease(LEASE_NAME, holder="beat-under-test", seconds=0.1).hold()
    deadline = time.monotonic() + 30
    lapsed = held
    while lapsed.returncode == 0 and time.monotonic() < deadline:
        lapsed = health("beat", JOBLEDGER_BEAT_LEASE_SECONDS="0.5")
    assert lapsed.returncode == 1
    assert "beat-under-test expired" in lapsed.stdout


def test_the_http_check_reads_the_status(tmp_path: Path) -> None:
    server = start_api_server(tmp_path)
    try:
        assert health("http", f"{server.url}/healthz").returncode == 0
        missing = health("http", f"{server.url}/no-such-page")
        assert missing.returncode == 1
        assert "404" in missing.stdout
    finally:
        server.stop()
