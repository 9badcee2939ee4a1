"""The HTTP API against the real ledger, broker and (where a job must run) a real worker."""

from __future__ import annotations

import hashlib
import importlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from fastapi.testclient import TestClient

import tasks.maintenance.purge  # noqa: F401  (registered, so refusing it is about the rule, not a typo)
from app.api.auth import ApiKey, ApiKeysMisconfigured, KeyRing, digest_of, new_key
from app.config import settings
from app.ledger.operations import actions as operations
from tests.support import api, ledger
from tests.support.api import ACME, OTHER
from tests.support.jobs import echo, fail, gate_key
from tests.support.ops import wait_at
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def wait_for_api_status(client: TestClient, job_id: str, *wanted: str) -> dict[str, object]:
    """Poll ``GET /jobs/{id}`` (the way a client follows a job) until it has a wanted status."""
    ledger.wait_for_status(job_id, *wanted)
    response = client.get(f"/jobs/{job_id}", headers=ACME)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    assert body["status"] in wanted
    return body


# -- keys --------------------------------------------------------------------------------


def test_a_request_without_a_valid_key_is_401(client: TestClient) -> None:
    assert client.get("/jobs").status_code == 401
    assert client.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    refused = client.post("/jobs", json={"type": "example.echo", "payload": {"value": 1}})

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert api.job_count() == 0
    assert client.get("/jobs", headers=ACME).status_code == 200  # Bearer
    assert client.get("/jobs", headers=OTHER).status_code == 200  # X-API-Key


def test_keys_are_configured_as_digests_with_a_name_and_a_tenant() -> None:
    ring = KeyRing.from_json(f'{{"{digest_of("s3cret")}": {{"name": "ci", "tenant": "acme"}}}}')

    identity = ring.identify("s3cret")
    assert identity is not None
    assert (identity.name, identity.tenant) == ("ci", "acme")
    assert ring.identify("s3cret ") is None
    with pytest.raises(ApiKeysMisconfigured, match="SHA-256"):
        KeyRing.from_json('{"s3cret": {"name": "ci", "tenant": "acme"}}')
    with pytest.raises(ApiKeysMisconfigured, match="'tenant'"):  # no tenant: sees everything
        KeyRing.from_json(f'{{"{digest_of("k")}": {{"name": "ci", "tenant": ""}}}}')


def test_a_generated_key_is_recognised_by_its_entry() -> None:
    key, entry = new_key("ci", "acme")

    ring = KeyRing.from_json(json.dumps(entry))
    # a new key starts with the least role (docs/security.md); it is written explicitly
    assert entry[digest_of(key)]["role"] == "viewer"
    assert ring.identify(key) == ApiKey(name="ci", tenant="acme", role="viewer")
    assert key not in json.dumps(entry)  # only the digest is configured


def test_an_allow_list_limits_the_types_a_key_may_create(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_API_JOB_TYPES", "example.echo")
    settings.cache_clear()
    try:
        refused = client.post(
            "/jobs", json={"type": "example.fail", "payload": {"message": "x"}}, headers=ACME
        )
        types = [entry["type"] for entry in client.get("/job-types", headers=ACME).json()]
    finally:
        monkeypatch.delenv("JOBLEDGER_API_JOB_TYPES")
        settings.cache_clear()

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "type"
    assert types == ["example.echo"]
    assert api.job_count() == 0


# -- create ------------------------------------------------------------------------------


def test_a_job_created_through_the_api_runs_and_is_recorded_with_trigger_api(
    client: TestClient, worker: WorkerProcess
) -> None:
    response = client.post(
        "/jobs", json={"type": "example.echo", "payload": {"value": 7}}, headers=ACME
    )

    assert response.status_code == 202
    created = response.json()
    job_id = created["id"]
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert created["status"] in ("queued", "running", "succeeded")  # the ledger's word
    assert created["name"]
    assert created["links"]["self"] == f"/jobs/{job_id}"
    assert created["links"]["cancel"] == f"/jobs/{job_id}/cancel"
    done = wait_for_api_status(client, job_id, "succeeded")
    assert done["progress"] == 100
    assert done["result"] == {"value": 7, "sha256": echo_digest(7)}
    row = ledger.job(job_id)
    assert row is not None
    assert (row["trigger"], row["created_by"], row["tenant"]) == ("api", "ci-bot", "acme")
    assert row["subject"] == "7"  # the job type's subject field
    assert row["payload"] == {"value": 7, "tenant": "acme"}  # the key's tenant filled in
    first = ledger.events(job_id)[0]
    assert (first["to_status"], first["actor"]) == ("queued", "api")


def echo_digest(value: int) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def test_a_payload_naming_another_tenant_is_403_and_writes_nothing(client: TestClient) -> None:
    response = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 1, "tenant": "other"}},
        headers=ACME,
    )

    assert response.status_code == 403
    assert response.json()["detail"][0]["field"] == "payload.tenant"
    assert api.job_count() == 0


def test_a_bad_payload_is_422_naming_each_field_and_writes_nothing(client: TestClient) -> None:
    response = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": "seven", "colour": "red"}},
        headers=ACME,
    )

    assert response.status_code == 422
    fields = {entry["field"]: entry["message"] for entry in response.json()["detail"]}
    assert set(fields) == {"payload.value", "payload.colour"}
    assert "integer" in fields["payload.value"]
    assert api.job_count() == 0


@pytest.mark.parametrize("job_type", ["no.such.type", "celery.chord_unlock", "purge"])
def test_a_type_that_is_not_a_creatable_job_task_is_422_naming_type(
    client: TestClient, job_type: str
) -> None:
    response = client.post("/jobs", json={"type": job_type, "payload": {}}, headers=ACME)

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "type"
    assert "example.echo" in problem["message"]  # lists what may be created
    assert "purge" not in problem["message"].split("known: ")[1]
    assert api.job_count() == 0


def test_malformed_json_is_400_and_a_missing_field_is_422(client: TestClient) -> None:
    malformed = client.post(
        "/jobs",
        content=b'{"type": "example.echo", ',
        headers={**ACME, "Content-Type": "application/json"},
    )
    missing = client.post("/jobs", json={"payload": {"value": 1}}, headers=ACME)

    assert malformed.status_code == 400
    assert malformed.json()["detail"][0]["field"] == "body"
    assert missing.status_code == 422
    assert missing.json()["detail"] == [{"field": "type", "message": "Field required"}]
    assert api.job_count() == 0


def test_job_types_lists_what_may_be_created_with_payload_schemas(client: TestClient) -> None:
    body = client.get("/job-types", headers=ACME).json()

    by_type = {entry["type"]: entry["payload_schema"] for entry in body}
    assert "value" in by_type["example.echo"]["properties"]
    assert {"import", "export", "sync_and_suggest"} <= set(by_type)
    assert "purge" not in by_type
    assert "lifeline" not in by_type


# -- read --------------------------------------------------------------------------------


def test_get_by_id_or_run_name_and_the_404_400_answers(client: TestClient) -> None:
    job = echo.apply_async(kwargs={"value": 1}, queue=api.unused_queue(), tenant="acme")
    name = ledger.job(job.id)["name"]  # type: ignore[index]

    by_id = client.get(f"/jobs/{job.id}", headers=ACME)
    by_name = client.get(f"/jobs/{name}", headers=ACME)
    unknown = client.get(f"/jobs/{uuid.uuid4()}", headers=ACME)
    malformed = client.get("/jobs/not-a-job", headers=ACME)

    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json()["id"] == by_name.json()["id"] == str(job.id)
    assert by_id.json()["steps"] == []
    assert "execution_id" not in by_id.json()
    assert unknown.status_code == 404
    assert malformed.status_code == 400
    assert malformed.json()["detail"].startswith("'not-a-job' is not a job id")


def test_another_tenants_job_does_not_exist_for_a_key(client: TestClient) -> None:
    job = echo.apply_async(kwargs={"value": 2}, queue=api.unused_queue(), tenant="acme")
    nobody = uuid.uuid4()
    never_existed = client.get(f"/jobs/{nobody}", headers=OTHER).json()["detail"]

    for method, path in [
        ("GET", f"/jobs/{job.id}"),
        ("GET", f"/jobs/{job.id}/events"),
        ("GET", f"/jobs/{job.id}/logs"),
        ("POST", f"/jobs/{job.id}/cancel"),
        ("POST", f"/jobs/{job.id}/retry"),
    ]:
        response = client.request(method, path, headers=OTHER)
        assert response.status_code == 404, path
        # worded like a job that never existed: nothing tells the two apart
        assert response.json()["detail"] == never_existed.replace(str(nobody), str(job.id))
    assert client.get("/jobs", headers=OTHER).json()["total"] == 0
    assert client.get("/jobs/stats", headers=OTHER).json()["total"] == 0
    assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]


def test_list_is_newest_first_paginated_with_total_and_filters(client: TestClient) -> None:
    queue = api.unused_queue()
    ids = [
        str(echo.apply_async(kwargs={"value": v}, queue=queue, tenant="acme").id) for v in range(5)
    ]
    failing = str(fail.apply_async(kwargs={"message": "x"}, queue=queue, tenant="acme").id)
    echo.apply_async(kwargs={"value": 3}, queue=queue, tenant="other")
    operations.cancel(ids[0], actor="cli")
    newest_first = [failing, *reversed(ids)]

    first = client.get("/jobs", params={"limit": 4}, headers=ACME).json()
    second = client.get("/jobs", params={"limit": 4, "page": 2}, headers=ACME).json()

    assert [item["id"] for item in first["items"] + second["items"]] == newest_first
    assert (first["total"], first["has_more"], second["has_more"]) == (6, True, False)
    assert "payload" not in first["items"][0]  # lists carry summaries; detail the documents

    def ids_of(**params: object) -> list[str]:
        response = client.get("/jobs", params=params, headers=ACME)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert ids_of(status="canceled") == [ids[0]]
    assert ids_of(status="Cancelled") == [ids[0]]  # other job systems' words are understood
    assert ids_of(status=["queued", "canceled"], limit=200) == newest_first
    assert ids_of(status="queued,canceled") == newest_first
    assert ids_of(type="example.fail") == [failing]
    assert ids_of(subject="3") == [ids[3]]  # not the other tenant's subject 3
    assert ids_of(since="2999-01-01T00:00:00") == []
    assert ids_of(since="2000-01-01T00:00:00Z") == newest_first
    by_subject = client.get("/subjects/3/jobs", headers=ACME).json()
    assert [item["id"] for item in by_subject["items"]] == [ids[3]]
    assert by_subject["total"] == 1


def test_list_parameters_out_of_range_are_422_naming_them(client: TestClient) -> None:
    too_many = client.get("/jobs", params={"limit": 201}, headers=ACME)
    bad_status = client.get("/jobs", params={"status": "exploded"}, headers=ACME)
    bad_page = client.get("/jobs", params={"page": 0}, headers=ACME)

    assert too_many.status_code == bad_status.status_code == bad_page.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "limit"
    assert bad_status.json()["detail"][0]["field"] == "status"
    assert "unknown job status 'exploded'" in bad_status.json()["detail"][0]["message"]
    assert bad_page.json()["detail"][0]["field"] == "page"


def test_stats_count_the_keys_tenant_per_status_and_type(client: TestClient) -> None:
    queue = api.unused_queue()
    for value in range(3):
        echo.apply_async(kwargs={"value": value}, queue=queue, tenant="acme")
    canceled = fail.apply_async(kwargs={"message": "x"}, queue=queue, tenant="acme")
    operations.cancel(canceled.id, actor="cli")
    echo.apply_async(kwargs={"value": 9}, queue=queue, tenant="other")

    stats = client.get("/jobs/stats", headers=ACME).json()

    assert stats["total"] == 4
    assert stats["by_status"]["queued"] == 3
    assert stats["by_status"]["canceled"] == 1
    assert stats["by_type"] == {"example.echo": {"queued": 3}, "example.fail": {"canceled": 1}}
    assert stats["live"] == 3


# -- cancel and retry --------------------------------------------------------------------


def test_cancel_of_a_waiting_job_is_200_and_retry_queues_it_again(client: TestClient) -> None:
    job = echo.apply_async(kwargs={"value": 4}, queue=api.unused_queue(), tenant="acme")

    canceled = client.post(f"/jobs/{job.id}/cancel", json={"reason": "not today"}, headers=ACME)
    assert canceled.status_code == 200
    assert (canceled.json()["status"], canceled.json()["outcome"]) == ("canceled", "canceled")
    assert canceled.json()["failure_reason"] == "not today"

    retried = client.post(f"/jobs/{job.id}/retry", headers=ACME)
    assert retried.status_code == 202
    assert retried.json()["status"] == "queued"
    assert [e["actor"] for e in ledger.events(job.id)][1:] == ["api", "api"]


def test_cancel_of_a_running_job_is_202_and_retry_runs_it_to_the_end(
    client: TestClient, worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    created = client.post(
        "/jobs", json={"type": "example.gated", "payload": {"gate": gate, "steps": 1}}, headers=ACME
    ).json()
    wait_at(redis_client, gate)

    requested = client.post(f"/jobs/{created['id']}/cancel", headers=ACME)
    assert requested.status_code == 202
    assert requested.json()["outcome"] == "requested"
    stopped = wait_for_api_status(client, created["id"], "canceled")
    assert stopped["failure_reason"]  # says why it stopped
    assert stopped["progress"] < 100

    assert client.post(f"/jobs/{created['id']}/retry", headers=ACME).status_code == 202
    wait_at(redis_client, gate)
    redis_client.rpush(gate_key(gate), 1)
    done = wait_for_api_status(client, created["id"], "succeeded")
    assert done["attempts"] == 2


def test_cancel_of_a_finished_job_and_retry_of_a_succeeded_one_are_409(
    client: TestClient, worker: WorkerProcess
) -> None:
    created = client.post(
        "/jobs", json={"type": "example.echo", "payload": {"value": 5}}, headers=ACME
    ).json()
    wait_for_api_status(client, created["id"], "succeeded")
    events_before = ledger.events(created["id"])

    cancel = client.post(f"/jobs/{created['id']}/cancel", headers=ACME)
    retry = client.post(f"/jobs/{created['id']}/retry", headers=ACME)

    assert cancel.status_code == retry.status_code == 409
    assert "cannot cancel" in cancel.json()["detail"]
    assert "it is succeeded; retry applies to failed or canceled" in retry.json()["detail"]
    assert ledger.events(created["id"]) == events_before


def test_events_and_logs_of_a_job_in_order(client: TestClient, worker: WorkerProcess) -> None:
    created = client.post(
        "/jobs", json={"type": "example.pair", "payload": {"value": 10}}, headers=ACME
    ).json()
    done = wait_for_api_status(client, created["id"], "succeeded")

    events = client.get(f"/jobs/{created['id']}/events", headers=ACME).json()["items"]
    logs = client.get(f"/jobs/{created['id']}/logs", headers=ACME).json()["items"]
    last = client.get(f"/jobs/{created['id']}/logs?limit=1", headers=ACME).json()["items"]

    assert [s["step_type"] for s in done["steps"]] == ["example.echo", "example.echo"]  # type: ignore[index, union-attr]
    own = [(e["from_status"], e["to_status"]) for e in events if e["step_id"] is None]
    assert own[0] == (None, "queued")
    assert own[-1] == ("running", "succeeded")
    assert [line["message"] for line in logs] == ["echo 10", "echo 11"]
    assert [line["message"] for line in last] == ["echo 11"]


def test_the_compose_api_service_serves_this_app() -> None:
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    service = compose["services"]["api"]

    assert service["command"][:2] == ["uvicorn", "app.api.main:app"]
    assert "JOBLEDGER_API_KEYS" in service["environment"]
    assert "@postgres:5432/" in service["environment"]["JOBLEDGER_DATABASE_URL"]
    module, _, name = service["command"][1].partition(":")
    assert hasattr(importlib.import_module(module), name)
