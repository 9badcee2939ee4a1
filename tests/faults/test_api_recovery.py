"""The API against its database going away, as a real uvicorn process: after the server
dropped the API's connections the next request succeeds, a ledger that is really down is
503 (never 500), and retried or concurrent ``POST /jobs`` with one ``Idempotency-Key``
make one job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from app import db
from tests.support import api
from tests.support.api import ACME
from tests.support.api_server import ApiServer, free_port, start_api_server

BODY = {"type": "example.echo", "payload": {"value": 1}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    started = start_api_server(tmp_path_factory.mktemp("api-recovery"))
    yield started
    started.stop()


def terminate_connections_of(server: ApiServer) -> int:
    """``pg_terminate_backend`` every connection the API process holds (what a database
    restart or failover does to it); returns how many there were."""
    with db.engine().connect() as connection:
        return len(
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": server.application_name},
            ).all()
        )


def test_after_the_database_dropped_its_connections_the_next_requests_succeed(
    server: ApiServer,
) -> None:
    with httpx.Client(base_url=server.url, headers=ACME, timeout=60) as client:
        assert client.post("/jobs", json=BODY).status_code == 202  # both pools in use
        assert client.get("/jobs").status_code == 200
        assert terminate_connections_of(server) >= 1

        listed = client.get("/jobs")
        created = client.post("/jobs", json={**BODY, "subject": "after"})
        shown = client.get(f"/jobs/{created.json()['id']}")

    assert listed.status_code == 200, listed.text
    assert created.status_code == 202, created.text
    assert shown.status_code == 200
    assert api.job_count() == 2  # exactly the two created: none made behind an error


def test_concurrent_posts_with_one_idempotency_key_make_one_job(server: ApiServer) -> None:
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            start.wait()
            answers.append(
                client.post("/jobs", json=BODY, headers={**ACME, "Idempotency-Key": "once"})
            )

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [202]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert api.job_count() == 1


def test_a_ledger_that_is_really_down_is_503(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/jobledger"  # nothing listens
    server = start_api_server(
        tmp_path, JOBLEDGER_DATABASE_URL=nowhere, JOBLEDGER_WRITE_RETRY_SECONDS="0.5"
    )
    try:
        with httpx.Client(base_url=server.url, headers=ACME, timeout=60) as client:
            listed = client.get("/jobs")
            shown = client.get("/jobs/5f0c7a52-1d2b-4c3e-9a8b-7c6d5e4f3a21")
            created = client.post("/jobs", json=BODY)
    finally:
        server.stop()

    assert (listed.status_code, shown.status_code, created.status_code) == (503, 503, 503)
    assert "JOBLEDGER_DATABASE_URL" in listed.json()["detail"]
