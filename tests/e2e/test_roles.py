"""API key roles: a viewer reads, an operator acts, an admin also manages definitions;
every action is recorded in the ledger with the key's name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api import auth
from app.api.auth import ApiKey, ApiKeysMisconfigured, KeyRing, digest_of
from tests.support import api, ledger
from tests.support.api import ACME, OPERATOR, VIEWER
from tests.support.jobs import echo, fail


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def ledger_rows() -> tuple[int, int, int, int]:
    """Everything an action could write: jobs, events, definitions, operations."""
    return (
        ledger.count("SELECT count(*) FROM jobs"),
        ledger.count("SELECT count(*) FROM job_events"),
        ledger.count("SELECT count(*) FROM job_definitions"),
        ledger.count("SELECT count(*) FROM job_operations"),
    )


def action_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every JSON API route that is not a read, as the OpenAPI document lists them (the
    dashboard's forms have their own session and CSRF rules)."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if not path.startswith("/dashboard")
        for method in operations
        if method not in {"get", "head"}
    )


def concrete(path: str, job_id: str) -> str:
    return path.replace("{ref}", job_id).replace("{name}", "nightly")


# -- keys and their roles ----------------------------------------------------------------


def test_a_key_without_a_role_is_an_admin_and_a_bad_role_stops_the_api() -> None:
    ring = KeyRing.from_json(
        json.dumps(
            {
                digest_of("old"): {"name": "old", "tenant": "acme"},
                digest_of("new"): {"name": "new", "tenant": "acme", "role": "viewer"},
            }
        )
    )

    assert ring.identify("old") == ApiKey(name="old", tenant="acme", role="admin")
    assert ring.identify("new") == ApiKey(name="new", tenant="acme", role="viewer")
    with pytest.raises(ApiKeysMisconfigured, match="role 'root'; use one of viewer, operator"):
        KeyRing.from_json(
            json.dumps({digest_of("k"): {"name": "k", "tenant": "acme", "role": "root"}})
        )


def test_the_key_maker_writes_an_explicit_role(capsys: pytest.CaptureFixture[str]) -> None:
    auth.main(["--name", "ops", "--tenant", "acme", "--role", "operator"])
    printed = capsys.readouterr().out
    entry = json.loads(printed.split("JOBLEDGER_API_KEYS entry: ", 1)[1])
    assert list(entry.values()) == [{"name": "ops", "tenant": "acme", "role": "operator"}]

    auth.main(["--name", "look", "--tenant", "acme"])
    printed = capsys.readouterr().out
    entry = json.loads(printed.split("JOBLEDGER_API_KEYS entry: ", 1)[1])
    assert next(iter(entry.values()))["role"] == "viewer"  # the least, unless told


# -- viewer --------------------------------------------------------------------------------


def test_a_viewer_is_refused_every_action_with_403_and_nothing_is_written(
    client: TestClient,
) -> None:
    job = fail.apply_async(kwargs={"message": "x"}, queue=api.unused_queue(), tenant="acme")
    assert (
        client.post(
            "/definitions",
            json={"name": "nightly", "type": "example.echo", "payload": {"value": 1}},
            headers=ACME,
        ).status_code
        == 201
    )
    before = ledger_rows()
    routes = action_routes(client)
    assert ("POST", "/operations") in routes
    assert ("POST", "/jobs/{ref}/cancel") in routes
    assert ("PATCH", "/definitions/{name}") in routes

    for method, path in routes:
        response = client.request(method, concrete(path, str(job.id)), json={}, headers=VIEWER)
        assert response.status_code == 403, (method, path, response.text)
        detail = response.json()["detail"]
        assert "'watcher' has role 'viewer'" in detail, detail
        assert "needs role" in detail

    assert ledger_rows() == before
    assert ledger.job(job.id)["status"] == "queued"  # type: ignore[index]


def test_a_viewer_reads_everything(client: TestClient) -> None:
    job = echo.apply_async(kwargs={"value": 1}, queue=api.unused_queue(), tenant="acme")

    for path in (
        "/jobs",
        f"/jobs/{job.id}",
        f"/jobs/{job.id}/events",
        "/jobs/stats",
        "/operations",
        "/definitions",
        "/job-types",
    ):
        assert client.get(path, headers=VIEWER).status_code == 200, path


# -- operator ----------------------------------------------------------------------------


def test_an_operator_acts_and_each_event_names_the_key(client: TestClient) -> None:
    queue = api.unused_queue()
    created = client.post(
        "/jobs", json={"type": "example.echo", "payload": {"value": 3}}, headers=OPERATOR
    )
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.json()["created_by"] == "on-call"
    other = echo.apply_async(kwargs={"value": 4}, queue=queue, tenant="acme")

    assert client.post(f"/jobs/{other.id}/cancel", headers=OPERATOR).status_code == 200
    assert client.post(f"/jobs/{other.id}/retry", headers=OPERATOR).status_code == 202

    queued_by = ledger.events(job_id)[0]
    assert (queued_by["actor"], queued_by["actor_name"]) == ("api", "on-call")
    acted = [(e["to_status"], e["actor"], e["actor_name"]) for e in ledger.events(other.id)]
    assert acted == [
        ("queued", "producer", None),
        ("canceled", "api", "on-call"),
        ("queued", "api", "on-call"),
    ]
    assert ledger.has_valid_history(other.id)


def test_an_operator_runs_definitions_but_only_an_admin_manages_them(client: TestClient) -> None:
    body: dict[str, Any] = {"name": "nightly", "type": "example.echo", "payload": {"value": 1}}
    refused = client.post("/definitions", json=body, headers=OPERATOR)
    assert refused.status_code == 403
    assert "needs role 'admin'" in refused.json()["detail"]
    assert ledger.count("SELECT count(*) FROM job_definitions") == 0

    assert client.post("/definitions", json=body, headers=ACME).status_code == 201
    patch = client.patch("/definitions/nightly", json={"enabled": False}, headers=OPERATOR)
    assert patch.status_code == 403
    assert (
        client.patch("/definitions/nightly", json={"enabled": False}, headers=ACME).status_code
        == 200
    )

    enabled = client.patch("/definitions/nightly", json={"enabled": True}, headers=ACME)
    assert enabled.status_code == 200
    run = client.post("/definitions/nightly/run", headers=OPERATOR)
    assert run.status_code == 202
    assert run.json()["created_by"] == "on-call"
    assert ledger.events(run.json()["id"])[0]["actor_name"] == "on-call"
