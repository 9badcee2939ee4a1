"""The definitions API against the real ledger, broker and (for runs) a real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db import engine
from app.ledger import definitions
from tests.support import api, ledger
from tests.support.api import ACME, OTHER
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


@pytest.fixture(autouse=True)
def _no_definitions(clean_ledger: None) -> None:
    """Definitions outlive the jobs' clean-up: every test starts without any."""
    with engine().begin() as connection:
        connection.execute(text("TRUNCATE job_definition_changes, job_definitions CASCADE"))


def definition_count() -> int:
    return ledger.count("SELECT count(*) FROM job_definitions")


def change_count() -> int:
    return ledger.count("SELECT count(*) FROM job_definition_changes")


def changes_of(name: str) -> list[dict[str, Any]]:
    with engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.version, c.actor, c.changed_by, c.changes "
                "FROM job_definition_changes c JOIN job_definitions d ON d.id = c.definition_id "
                "WHERE d.name = :name ORDER BY c.id"
            ),
            {"name": name},
        )
        return [dict(row._mapping) for row in rows]


def every(seconds: int = 3600) -> dict[str, Any]:
    return {"every": seconds}


def create(
    client: TestClient, name: str = "nightly", headers: dict[str, str] = ACME, **fields: Any
) -> Any:
    body = {"name": name, "type": "example.echo", "payload": {"value": 1}, **fields}
    return client.post("/definitions", json=body, headers=headers)


def fields_of(response: Any) -> list[str]:
    return [problem["field"] for problem in response.json()["detail"]]


# -- create ------------------------------------------------------------------------------


def test_a_definition_is_created_with_its_schedule_in_words_and_next_run(
    client: TestClient,
) -> None:
    response = create(
        client,
        schedule={"cron": "*/5 * * * *", "timezone": "Europe/Paris"},
        catch_up="once",
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == "/definitions/nightly"
    assert created["name"] == "nightly"
    assert created["tenant"] == "acme"
    assert created["type"] == "example.echo"
    assert created["payload"] == {"value": 1, "tenant": "acme"}  # the key's tenant
    assert created["enabled"] is True
    assert created["catch_up"] == "once"
    assert created["version"] == 1
    assert created["next_run_at"]
    assert "*/5 * * * *" in created["schedule_text"]
    assert "Europe/Paris" in created["schedule_text"]
    assert created["created_by"] == "ci-bot"
    assert created["last_run"] is None
    assert created["last_status"] is None
    assert created["links"]["runs"] == "/definitions/nightly/runs"
    assert client.get("/definitions/nightly", headers=ACME).json()["id"] == created["id"]
    listed = client.get("/definitions", headers=ACME).json()
    assert [item["name"] for item in listed["items"]] == ["nightly"]
    assert listed["total"] == 1
    history = changes_of("nightly")
    assert [(c["version"], c["actor"], c["changed_by"]) for c in history] == [(1, "api", "ci-bot")]
    assert "nightly" in json.dumps(history[0]["changes"])  # the whole definition on creation


def test_an_interval_definition_without_a_schedule_has_no_next_run(client: TestClient) -> None:
    scheduled = create(client, "often", schedule=every(30)).json()
    unscheduled = create(client, "by-hand").json()

    assert scheduled["next_run_at"] is not None
    assert scheduled["schedule_text"] == "every 30 s"
    assert unscheduled["schedule"] is None
    assert unscheduled["next_run_at"] is None
    assert unscheduled["schedule_text"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": {"cron": "61 * * * *", "timezone": "UTC"}}, "schedule.cron"),
        ({"schedule": {"cron": "not a cron", "timezone": "UTC"}}, "schedule.cron"),
        ({"schedule": {"cron": "*/5 * * * *", "timezone": "Mars/Olympus"}}, "schedule.timezone"),
        ({"schedule": {"every": 0}}, "schedule.every"),
        ({"schedule": {"every": -5}}, "schedule.every"),
        ({"type": "example.nope"}, "type"),
        ({"type": "purge"}, "type"),  # maintenance: beat and the CLI run it, not a key
        ({"payload": {"value": "not a number"}}, "payload.value"),
        ({"payload": {"value": 1, "colour": "red"}}, "payload.colour"),
        ({"catch_up": "twice"}, "catch_up"),
        ({"name": "has space"}, "name"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_definitions_are_422_naming_the_field_and_write_nothing(
    client: TestClient, fields: dict[str, Any], field: str
) -> None:
    response = create(client, **fields)

    assert response.status_code == 422, response.text
    assert field in fields_of(response), response.json()
    assert definition_count() == 0
    assert change_count() == 0


def test_a_duplicate_name_is_409_and_another_tenant_may_use_it(client: TestClient) -> None:
    assert create(client).status_code == 201

    duplicate = create(client, payload={"value": 2})
    assert duplicate.status_code == 409
    assert fields_of(duplicate) == ["name"]
    assert definition_count() == 1
    assert change_count() == 1
    assert client.get("/definitions/nightly", headers=ACME).json()["payload"]["value"] == 1
    assert create(client, headers=OTHER).status_code == 201
    assert definition_count() == 2


def test_a_payload_naming_another_tenant_is_403_and_writes_nothing(client: TestClient) -> None:
    response = create(client, payload={"value": 1, "tenant": "other"})

    assert response.status_code == 403
    assert fields_of(response) == ["payload.tenant"]
    assert definition_count() == 0


def test_definitions_need_a_key(client: TestClient) -> None:
    assert client.get("/definitions").status_code == 401
    refused = client.post("/definitions", json={"name": "x", "type": "example.echo"})
    assert refused.status_code == 401
    assert definition_count() == 0


# -- tenants -----------------------------------------------------------------------------


def test_another_tenants_definition_is_404_everywhere(client: TestClient) -> None:
    assert create(client, schedule=every()).status_code == 201

    assert client.get("/definitions/nightly", headers=OTHER).status_code == 404
    patched = client.patch("/definitions/nightly", json={"payload": {"value": 9}}, headers=OTHER)
    assert patched.status_code == 404
    assert client.post("/definitions/nightly/run", headers=OTHER).status_code == 404
    assert client.get("/definitions/nightly/runs", headers=OTHER).status_code == 404
    assert client.get("/definitions", headers=OTHER).json()["items"] == []
    assert client.get("/definitions/missing", headers=ACME).status_code == 404
    # nothing changed, nothing ran
    assert change_count() == 1
    assert api.job_count() == 0
    assert client.get("/definitions/nightly", headers=ACME).json()["version"] == 1


# -- change ------------------------------------------------------------------------------


def test_a_patch_makes_one_new_version_recorded_with_the_keys_name(client: TestClient) -> None:
    create(client, schedule=every())

    response = client.patch("/definitions/nightly", json={"payload": {"value": 2}}, headers=ACME)

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert response.json()["payload"]["value"] == 2
    history = changes_of("nightly")
    assert [(c["version"], c["actor"], c["changed_by"]) for c in history] == [
        (1, "api", "ci-bot"),
        (2, "api", "ci-bot"),
    ]
    assert set(history[1]["changes"]) == {"payload"}
    assert history[1]["changes"]["payload"]["from"]["value"] == 1
    assert history[1]["changes"]["payload"]["to"]["value"] == 2


def test_a_bad_patch_is_422_naming_the_field_and_changes_nothing(client: TestClient) -> None:
    create(client, schedule=every())

    for body, field in [
        ({"schedule": {"cron": "* * *", "timezone": "UTC"}}, "schedule.cron"),
        ({"schedule": {"cron": "* * * * *", "timezone": "Nowhere/Land"}}, "schedule.timezone"),
        ({"schedule": {"every": 0}}, "schedule.every"),
        ({"payload": {"value": "x"}}, "payload.value"),
        ({"enabled": None}, "enabled"),
        ({"colour": "red"}, "colour"),
        ({}, "body"),
    ]:
        response = client.patch("/definitions/nightly", json=body, headers=ACME)
        assert response.status_code == 422, (body, response.text)
        assert field in fields_of(response), (body, response.json())

    assert client.get("/definitions/nightly", headers=ACME).json()["version"] == 1
    assert change_count() == 1


def test_disable_unschedule_and_archive(client: TestClient) -> None:
    create(client, schedule=every())

    disabled = client.patch("/definitions/nightly", json={"enabled": False}, headers=ACME)
    assert disabled.json()["enabled"] is False
    assert disabled.json()["next_run_at"] is None
    enabled = client.patch("/definitions/nightly", json={"enabled": True}, headers=ACME)
    assert enabled.json()["next_run_at"] is not None
    unscheduled = client.patch("/definitions/nightly", json={"schedule": None}, headers=ACME)
    assert unscheduled.json()["schedule"] is None
    assert unscheduled.json()["next_run_at"] is None

    archived = client.patch("/definitions/nightly", json={"archived": True}, headers=ACME)
    assert archived.status_code == 200
    assert archived.json()["archived"] is True
    assert client.get("/definitions", headers=ACME).json()["items"] == []
    every_one = client.get("/definitions?include_archived=true", headers=ACME).json()
    assert [item["name"] for item in every_one["items"]] == ["nightly"]
    assert client.post("/definitions/nightly/run", headers=ACME).status_code == 409
    assert api.job_count() == 0
    assert [c["version"] for c in changes_of("nightly")] == [1, 2, 3, 4, 5]


# -- run ---------------------------------------------------------------------------------


def test_a_run_by_hand_is_a_job_linked_to_its_definition(
    client: TestClient, worker: WorkerProcess
) -> None:
    create(client, payload={"value": 5})

    response = client.post("/definitions/nightly/run", headers=ACME)

    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["trigger"] == "manual"
    assert job["definition"] == "nightly"
    assert job["scheduled_for"] is None
    assert job["type"] == "example.echo"
    assert job["created_by"] == "ci-bot"
    assert job["tenant"] == "acme"
    assert job["payload"]["value"] == 5
    ledger.wait_for_status(job["id"], "succeeded")
    shown = client.get(f"/jobs/{job['id']}", headers=ACME).json()
    assert shown["definition"] == "nightly"
    assert shown["definition_version"] == 1
    assert shown["result"]["value"] == 5

    runs = client.get("/definitions/nightly/runs", headers=ACME).json()
    assert set(runs) == {"items", "page", "limit", "total", "has_more"}
    assert [item["id"] for item in runs["items"]] == [job["id"]]
    assert runs["total"] == 1
    assert runs["items"][0]["trigger"] == "manual"
    definition = client.get("/definitions/nightly", headers=ACME).json()
    assert definition["last_status"] == "succeeded"
    assert definition["last_run"]["id"] == job["id"]


def test_a_run_uses_the_payload_of_the_current_version(
    client: TestClient, worker: WorkerProcess
) -> None:
    create(client, payload={"value": 1})
    first = client.post("/definitions/nightly/run", headers=ACME).json()
    client.patch("/definitions/nightly", json={"payload": {"value": 2}}, headers=ACME)
    second = client.post("/definitions/nightly/run", headers=ACME).json()

    assert (first["payload"]["value"], second["payload"]["value"]) == (1, 2)
    assert (first["definition_version"], second["definition_version"]) == (1, 2)
    ledger.wait_for_status(second["id"], "succeeded")
    runs = client.get("/definitions/nightly/runs?limit=1", headers=ACME).json()
    assert [item["id"] for item in runs["items"]] == [second["id"]]
    assert (runs["total"], runs["has_more"]) == (2, True)
    assert client.get("/definitions/nightly/runs?status=bogus", headers=ACME).status_code == 422
    # jobs made otherwise are nobody's runs
    other = client.post(
        "/jobs", json={"type": "example.echo", "payload": {"value": 3}}, headers=ACME
    ).json()
    assert other["definition"] is None
    assert client.get("/definitions/nightly/runs", headers=ACME).json()["total"] == 2


def test_a_scheduled_run_shows_the_firing_it_was_made_for(client: TestClient) -> None:
    create(client, schedule=every(60), options={"queue": api.unused_queue()})
    firing = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    # what beat does for a firing (app.ledger.runtime.beat), twice: one job
    made = definitions.run(
        "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    again = definitions.run(
        "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
    )

    assert made is not None
    assert again is None
    shown = client.get(f"/jobs/{made}", headers=ACME).json()
    assert shown["definition"] == "nightly"
    assert datetime.fromisoformat(shown["scheduled_for"]) == firing
    assert shown["trigger"] == "beat"
    runs = client.get("/definitions/nightly/runs", headers=ACME).json()
    assert [item["id"] for item in runs["items"]] == [str(made)]
    assert datetime.fromisoformat(runs["items"][0]["scheduled_for"]) == firing
    assert client.get("/definitions/nightly", headers=ACME).json()["last_status"] == "queued"


def test_job_lists_name_the_definition_of_each_run(client: TestClient) -> None:
    """The runs page and ``GET /jobs`` show, like the job document, ``definition`` (its
    name) on a job made from one, and null on a job that was not."""
    create(client, schedule=every(60), options={"queue": api.unused_queue()})
    firing = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    made = definitions.run(
        "acme", "nightly", scheduled_for=firing, trigger="beat", created_by="beat"
    )
    plain = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 2}},
        headers=ACME,
    )
    assert plain.status_code == 202, plain.text

    runs = client.get("/definitions/nightly/runs", headers=ACME).json()
    assert [(item["id"], item["definition"]) for item in runs["items"]] == [(str(made), "nightly")]
    listed = {item["id"]: item for item in client.get("/jobs", headers=ACME).json()["items"]}
    assert listed[str(made)]["definition"] == "nightly"
    assert listed[plain.json()["id"]]["definition"] is None
    assert listed[plain.json()["id"]]["scheduled_for"] is None
