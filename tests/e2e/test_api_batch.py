"""``POST /jobs/batch`` against the real ledger and broker (and a real worker where the
jobs must run): all or nothing, every refused field named by its index, idempotent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.api.batches import MAX_BATCH
from app.config import settings
from tests.support import api, ledger
from tests.support.api import ACME, OTHER, VIEWER
from tests.support.api_server import free_port, start_api_server
from tests.support.processes import WorkerProcess
from tests.support.races import at_once

ECHO = {"type": "example.echo", "payload": {"value": 1}}
#: Transactions that wrote queued events (events are never updated: xmin stays the
#: inserting transaction's id).
ONE_TRANSACTION = "SELECT count(DISTINCT xmin::text) FROM job_events WHERE to_status = 'queued'"


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def echoes(count: int) -> list[dict[str, Any]]:
    return [{"type": "example.echo", "payload": {"value": n}} for n in range(count)]


# -- made --------------------------------------------------------------------------------


def test_a_mixed_batch_is_recorded_in_one_transaction_in_order_and_runs(
    client: TestClient, worker: WorkerProcess
) -> None:
    body = [
        {"type": "example.echo", "payload": {"value": 7}},
        {"type": "example.fail", "payload": {"message": "as asked"}},
        {"type": "example.echo", "payload": {"value": 8}, "subject": "eight", "priority": 9},
    ]

    response = client.post("/jobs/batch", json=body, headers=ACME)

    assert response.status_code == 202, response.text
    items = response.json()["items"]
    assert [item["type"] for item in items] == [job["type"] for job in body]
    assert all(item["links"]["self"] == f"/jobs/{item['id']}" for item in items)
    assert all(item["status"] in ("queued", "running", "succeeded", "failed") for item in items)
    first, failing, last = (item["id"] for item in items)
    assert ledger.wait_for_status(first, "succeeded")["result"]["value"] == 7
    assert ledger.wait_for_status(failing, "failed")["failure_reason"]
    done = ledger.wait_for_status(last, "succeeded")
    assert (done["subject"], done["priority"]) == ("eight", 9)
    assert ledger.job(first)["subject"] == "7"  # type: ignore[index]  # the type's own
    assert (
        ledger.count(
            "SELECT count(*) FROM jobs "
            "WHERE trigger = 'api' AND created_by = 'ci-bot' AND tenant = 'acme'"
        )
        == 3
    )
    assert (
        ledger.count(
            "SELECT count(*) FROM job_events "
            "WHERE to_status = 'queued' AND actor = 'api' AND actor_name = 'ci-bot'"
        )
        == 3
    )
    assert all(ledger.has_valid_history(job_id) for job_id in (first, failing, last))
    assert ledger.count(ONE_TRANSACTION) == 1


def test_the_largest_batch_is_made_and_one_more_job_is_422_writing_nothing(
    client: TestClient,
) -> None:
    too_many = client.post("/jobs/batch", json=echoes(MAX_BATCH + 1), headers=ACME)
    empty = client.post("/jobs/batch", json=[], headers=ACME)

    assert too_many.status_code == 422
    [problem] = too_many.json()["detail"]
    assert problem["field"] == "body"
    assert str(MAX_BATCH) in problem["message"]
    assert empty.status_code == 422
    assert api.job_count() == 0
    made = client.post("/jobs/batch", json=echoes(MAX_BATCH), headers=ACME)
    assert made.status_code == 202
    assert len(made.json()["items"]) == MAX_BATCH
    assert api.job_count() == MAX_BATCH


def test_a_body_over_the_size_limit_is_413_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_API_MAX_BODY_BYTES", "2048")
    settings.cache_clear()
    try:
        with TestClient(api.create_app(api.keyring())) as small:
            refused = small.post("/jobs/batch", json=echoes(100), headers=ACME)
    finally:
        monkeypatch.delenv("JOBLEDGER_API_MAX_BODY_BYTES")
        settings.cache_clear()

    assert refused.status_code == 413
    assert "JOBLEDGER_API_MAX_BODY_BYTES" in refused.json()["detail"]
    assert api.job_count() == 0


# -- refused -----------------------------------------------------------------------------


def test_every_refused_field_is_named_by_its_index_and_nothing_is_written(
    client: TestClient,
) -> None:
    body = [
        ECHO,
        {"type": "no.such.type", "payload": {}},
        {"type": "example.echo", "payload": {"value": "seven", "colour": "red"}},
        {"type": "purge", "payload": {}},
        {"type": "example.fail", "payload": {}},
    ]

    response = client.post("/jobs/batch", json=body, headers=ACME)

    assert response.status_code == 422
    fields = [entry["field"] for entry in response.json()["detail"]]
    assert fields == [
        "[1].type",
        "[2].payload.value",
        "[2].payload.colour",
        "[3].type",
        "[4].payload.message",
    ]
    assert "example.echo" in response.json()["detail"][0]["message"]  # lists the known
    assert api.job_count() == 0
    assert ledger.count("SELECT count(*) FROM job_events") == 0


def test_a_malformed_job_of_the_body_is_422_naming_its_index(client: TestClient) -> None:
    body = [ECHO, {"payload": {"value": 1}}, {**ECHO, "priority": 12}, {**ECHO, "subject": ""}]

    response = client.post("/jobs/batch", json=body, headers=ACME)

    assert response.status_code == 422
    fields = [entry["field"] for entry in response.json()["detail"]]
    assert fields == ["[1].type", "[2].priority", "[3].subject"]
    assert api.job_count() == 0


def test_a_body_that_is_not_an_array_is_422(client: TestClient) -> None:
    response = client.post("/jobs/batch", json=ECHO, headers=ACME)

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body"
    assert api.job_count() == 0


# -- idempotency -------------------------------------------------------------------------


def test_the_same_key_and_body_answer_the_same_jobs_and_another_body_is_409(
    client: TestClient,
) -> None:
    headers = {**ACME, "Idempotency-Key": "nightly-2026-11-30"}
    body = [ECHO, {"type": "example.fail", "payload": {"message": "x"}}]

    first = client.post("/jobs/batch", json=body, headers=headers)
    again = client.post("/jobs/batch", json=body, headers=headers)
    other = client.post("/jobs/batch", json=[ECHO, ECHO], headers=headers)
    longer = client.post("/jobs/batch", json=[*body, ECHO], headers=headers)

    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert [i["id"] for i in again.json()["items"]] == [i["id"] for i in first.json()["items"]]
    for refused in (other, longer):
        assert refused.status_code == 409
        assert refused.json()["detail"][0]["field"] == "Idempotency-Key"
    assert api.job_count() == 2


def test_concurrent_requests_with_one_key_make_the_batch_once(client: TestClient) -> None:
    headers = {**ACME, "Idempotency-Key": "together"}
    body = echoes(20)

    ended = at_once(lambda: client.post("/jobs/batch", json=body, headers=headers), 6)

    answers = [answer for answer in ended if not isinstance(answer, BaseException)]
    assert len(answers) == 6, ended
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [202]
    assert len({json.dumps([i["id"] for i in a.json()["items"]]) for a in answers}) == 1
    assert api.job_count() == 20
    assert ledger.count("SELECT count(*) FROM job_events WHERE to_status = 'queued'") == 20
    assert ledger.count(ONE_TRANSACTION) == 1


# -- tenancy and roles -------------------------------------------------------------------


def test_a_payload_naming_another_tenant_is_403_and_nothing_is_written(
    client: TestClient,
) -> None:
    body = [
        {"type": "export", "payload": {"dataset": "sales"}},
        {"type": "export", "payload": {"dataset": "sales", "tenant": "acme"}},
        {"type": "no.such.type", "payload": {}},
    ]

    response = client.post("/jobs/batch", json=body, headers=OTHER)

    assert response.status_code == 403
    assert [entry["field"] for entry in response.json()["detail"]] == ["[1].payload.tenant"]
    assert api.job_count() == 0


def test_every_job_gets_the_keys_tenant_and_is_invisible_to_another(client: TestClient) -> None:
    body = [ECHO, {"type": "export", "payload": {"dataset": "sales"}}]

    made = client.post("/jobs/batch", json=body, headers=OTHER)

    assert made.status_code == 202
    ids = [item["id"] for item in made.json()["items"]]
    assert {row["tenant"] for row in map(ledger.job, ids)} == {"other"}  # type: ignore[index]
    assert ledger.job(ids[1])["payload"]["tenant"] == "other"  # type: ignore[index]
    for job_id in ids:
        assert client.get(f"/jobs/{job_id}", headers=ACME).status_code == 404
        assert client.get(f"/jobs/{job_id}", headers=OTHER).status_code == 200


def test_a_viewer_may_not_make_a_batch(client: TestClient) -> None:
    refused = client.post("/jobs/batch", json=[ECHO], headers=VIEWER)
    anonymous = client.post("/jobs/batch", json=[ECHO])

    assert refused.status_code == 403
    assert "operator" in json.dumps(refused.json())
    assert anonymous.status_code == 401
    assert api.job_count() == 0


# -- the broker refuses ------------------------------------------------------------------


def test_a_batch_the_broker_refuses_is_503_listing_each_job_failed(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = start_api_server(tmp_path, JOBLEDGER_BROKER_URL=nowhere)
    headers = {**ACME, "Idempotency-Key": "while-down"}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            answer = http.post("/jobs/batch", json=echoes(3), headers=headers)
    finally:
        server.stop()

    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert "3 of the batch's 3 jobs could not be published" in body["detail"]
    assert [item["status"] for item in body["items"]] == ["failed"] * 3
    assert all(item["failure_reason"].startswith("could not publish") for item in body["items"])
    assert (
        ledger.count(
            "SELECT count(*) FROM jobs WHERE status = 'failed' "
            "AND failure_reason LIKE 'could not publish the job to the broker: %'"
        )
        == 3
    )
    assert ledger.count("SELECT count(*) FROM jobs WHERE idempotency_key IS NOT NULL") == 0
