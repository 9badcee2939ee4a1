"""``GET /jobs`` with the search's query names on the real ledger and worker: each
filter, several statuses, sorts, refusals naming the parameter, the key's tenant only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support import api, ledger
from tests.support.api import ACME, OTHER, VIEWER
from tests.support.jobs import echo, fail
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def ids(client: TestClient, query: str, headers: dict[str, str] = VIEWER) -> set[str]:
    response = client.get(f"/jobs?{query}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return {item["id"] for item in body["items"]}


def test_each_query_name_filters_the_keys_tenant_only(
    client: TestClient, worker: WorkerProcess
) -> None:
    queue = api.unused_queue()
    waiting = str(echo.apply_async(kwargs={"value": 1}, queue=queue, tenant="acme").id)
    broken = str(fail.apply_async(kwargs={"message": "disk quota exceeded"}, tenant="acme").id)
    done = str(echo.apply_async(kwargs={"value": 2}, tenant="acme").id)
    theirs = str(fail.apply_async(kwargs={"message": "disk quota exceeded"}, tenant="other").id)
    ledger.wait_for_status(broken, "failed")
    ledger.wait_for_status(done, "succeeded")
    ledger.wait_for_status(theirs, "failed")
    ran_on = ledger.job(done)["worker"]  # type: ignore[index]

    assert ids(client, "q=QUOTA") == {broken}
    assert ids(client, "q=QUOTA", OTHER) == {theirs}
    assert ids(client, f"q={done}") == {done}
    assert ids(client, "status=failed&status=succeeded") == {broken, done}
    assert ids(client, "status=failed,queued") == {broken, waiting}
    assert ids(client, "type=example.fail") == {broken}
    assert ids(client, f"queue={queue}") == {waiting}
    assert ids(client, f"worker={ran_on}") >= {done}
    assert waiting not in ids(client, f"worker={ran_on}")
    # failed without a retry policy is not dead (dead: failed after the policy's last
    # attempt, tests/e2e/test_retry_policies.py)
    assert ids(client, "dead=true") == set()
    assert ids(client, "definition=nightly") == set()
    assert ids(client, "created_before=2000-01-01") == set()
    assert ids(client, "created_after=2000-01-01") == {waiting, broken, done}

    by_duration = client.get("/jobs?sort=-duration", headers=ACME).json()["items"]
    durations = [item["duration"] for item in by_duration]
    known = [d for d in durations if d is not None]
    assert durations[: len(known)] == known == sorted(known, reverse=True)
    assert by_duration[-1]["id"] == waiting  # not finished: last


def test_a_refused_value_is_422_naming_the_parameter(client: TestClient) -> None:
    for query, name in (
        ("status=exploded", "status"),
        ("sort=size", "sort"),
        ("dead=maybe", "dead"),
        ("created_after=yesterday", "created_after"),
        ("q=" + "x" * 201, "q"),
    ):
        response = client.get(f"/jobs?{query}", headers=ACME)
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["field"] == name, response.json()
