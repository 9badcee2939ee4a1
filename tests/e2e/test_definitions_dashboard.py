"""The dashboard's definitions pages: schedule in words, next run, last status, runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import engine
from tests.support import api, ledger
from tests.support.api import ACME, OTHER
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


@pytest.fixture(autouse=True)
def _no_definitions(clean_ledger: None) -> None:
    with engine().begin() as connection:
        connection.execute(text("TRUNCATE job_definition_changes, job_definitions CASCADE"))


def test_the_definitions_page_and_a_definitions_runs(
    client: TestClient, worker: WorkerProcess
) -> None:
    body = {"name": "nightly", "type": "example.echo", "payload": {"value": 3}}
    assert (
        client.post(
            "/definitions", json={**body, "schedule": {"every": 3600}}, headers=ACME
        ).status_code
        == 201
    )
    assert (
        client.post("/definitions", json={**body, "name": "by-hand"}, headers=ACME).status_code
        == 201
    )

    listed = client.get("/dashboard/definitions", headers=ACME)
    assert listed.status_code == 200
    assert "every 3600 s" in listed.text
    assert "by hand only" in listed.text
    assert "never run" in listed.text
    assert 'href="/dashboard/definitions/nightly"' in listed.text
    assert "nightly" not in client.get("/dashboard/definitions", headers=OTHER).text

    job = client.post("/definitions/nightly/run", headers=ACME).json()
    ledger.wait_for_status(job["id"], "succeeded")
    page = client.get("/dashboard/definitions/nightly", headers=ACME)
    assert page.status_code == 200
    assert f'href="/dashboard/jobs/{job["id"]}"' in page.text
    assert job["name"] in page.text
    assert "manual" in page.text
    assert "succeeded" in page.text
    assert "every 3600 s" in page.text
    assert "succeeded" in client.get("/dashboard/definitions", headers=ACME).text
    assert client.get("/dashboard/definitions/nightly", headers=OTHER).status_code == 404
    assert client.get("/dashboard/definitions/missing", headers=ACME).status_code == 404
    assert client.get("/dashboard/definitions", follow_redirects=False).status_code == 303
