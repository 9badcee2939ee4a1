"""A definition made and changed through the API, fired by a real ``celery -A app beat``
and run by a real worker: runs linked to it, an edit reaching the next run and a
disable stopping the runs, without restarting beat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import engine
from tests.support import api
from tests.support.api import ACME
from tests.support.processes import ROOT, WorkerProcess

#: Short lease and tick, so a change is seen within a second.
BEAT_ENV = {"JOBLEDGER_BEAT_LEASE_SECONDS": "4", "JOBLEDGER_BEAT_TICK_SECONDS": "0.5"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


@pytest.fixture(autouse=True)
def _no_definitions(clean_ledger: None) -> None:
    with engine().begin() as connection:
        connection.execute(
            text("TRUNCATE job_definition_changes, job_definitions, beat_leases CASCADE")
        )


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / "beat.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app",
                "beat",
                "--loglevel=INFO",
                "-s",
                str(tmp_path / "schedule"),
                "--pidfile",
                str(tmp_path / "beat.pid"),
            ],
            cwd=ROOT,
            env={**os.environ, **BEAT_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield process
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for(check: Callable[[], Any], timeout: float, beat: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert beat.poll() is None, "beat died"
        found = check()
        if found:
            return found
        time.sleep(0.1)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"not within {timeout}s")


def runs(client: TestClient) -> list[dict[str, Any]]:
    """The definition's runs as the API lists them, newest first."""
    response = client.get("/definitions/pulse/runs?limit=200", headers=ACME)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def job(client: TestClient, job_id: str) -> dict[str, Any]:
    document: dict[str, Any] = client.get(f"/jobs/{job_id}", headers=ACME).json()
    return document


def test_an_api_definition_runs_on_beat_follows_an_edit_and_stops_when_disabled(
    client: TestClient, worker: WorkerProcess, beat: subprocess.Popen[bytes]
) -> None:
    created = client.post(
        "/definitions",
        json={
            "name": "pulse",
            "type": "example.echo",
            "payload": {"value": 1},
            "schedule": {"every": 1},
        },
        headers=ACME,
    )
    assert created.status_code == 201, created.text

    first = wait_for(lambda: runs(client)[-1:], 30, beat)[0]
    fired = job(client, first["id"])
    assert fired["definition"] == "pulse"
    assert fired["trigger"] == "beat"
    assert fired["scheduled_for"] is not None
    assert (fired["payload"]["value"], fired["definition_version"]) == (1, 1)
    assert first["scheduled_for"] == fired["scheduled_for"]

    edited = client.patch("/definitions/pulse", json={"payload": {"value": 2}}, headers=ACME)
    assert edited.json()["version"] == 2
    newer = wait_for(
        lambda: [
            item for item in runs(client) if job(client, item["id"])["definition_version"] == 2
        ],
        15,
        beat,
    )
    assert job(client, newer[-1]["id"])["payload"]["value"] == 2

    disabled = client.patch("/definitions/pulse", json={"enabled": False}, headers=ACME)
    assert disabled.json()["next_run_at"] is None
    time.sleep(1.5)  # a tick that read the definition before the PATCH may still fire
    settled = len(runs(client))
    time.sleep(4)  # four firings' worth of an every-1-s schedule, eight ticks
    assert beat.poll() is None
    every_run = runs(client)
    assert len(every_run) == settled

    scheduled = [item["scheduled_for"] for item in every_run]
    assert len(set(scheduled)) == len(scheduled)  # one job per firing
    assert {item["trigger"] for item in every_run} == {"beat"}
    with engine().connect() as connection:
        linked = connection.execute(
            text(
                "SELECT count(*) FROM jobs j JOIN job_definitions d ON d.id = j.definition_id "
                "WHERE d.name = 'pulse' AND d.tenant = 'acme'"
            )
        ).scalar_one()
    assert linked == len(every_run)
    definition = client.get("/definitions/pulse", headers=ACME).json()
    assert definition["last_run"]["id"] == every_run[0]["id"]
