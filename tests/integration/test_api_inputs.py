"""Hostile values in every parameter and body field of the API (and in the options of
``delay()``): a 4xx (``InvalidPayload``) naming the field, never a 500. NUL characters
PostgreSQL cannot store, pages whose offset overflows a bigint, times that leave the
representable range once moved to UTC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.exceptions import InvalidPayload
from tests.support import api
from tests.support.api import ACME
from tests.support.jobs import echo

FAR_FUTURE = "9999-12-31T23:59:59-14:00"
FAR_PAST = "0001-01-01T00:00:00+14:00"
HUGE = str(10**24)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app for the module; server errors are answered (500), not raised, so a test
    sees exactly what a client would."""
    from app.api.main import create_app

    with TestClient(create_app(api.keyring()), raise_server_exceptions=False) as test_client:
        yield test_client


QUERY_CASES = [
    ("/jobs", {"page": HUGE}, "page"),
    ("/jobs", {"page": str(10**17)}, "page"),
    ("/jobs", {"limit": HUGE}, "limit"),
    ("/jobs", {"since": FAR_FUTURE}, "since"),
    ("/jobs", {"since": FAR_PAST}, "since"),
    ("/jobs", {"since": "not-a-time"}, "since"),
    ("/jobs", {"type": "a\x00b"}, "type"),
    ("/jobs", {"subject": "a\x00b"}, "subject"),
    ("/jobs", {"status": "failed\x00"}, "status"),
    ("/jobs/stats", {"since": FAR_FUTURE}, "since"),
    ("/subjects/s/jobs", {"page": HUGE}, "page"),
    ("/subjects/a%00b/jobs", {}, "subject"),
    ("/jobs/a%00b", {}, "ref"),
    ("/jobs/a%00b/events", {}, "ref"),
    ("/jobs/00000000-0000-0000-0000-000000000000/logs", {"limit": HUGE}, "limit"),
    ("/dashboard", {"page": HUGE}, "page"),
    ("/dashboard", {"type": "a\x00b"}, "type"),
]


@pytest.mark.parametrize(("path", "params", "field"), QUERY_CASES)
def test_a_hostile_query_or_path_parameter_is_422_naming_it(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = client.get(path, params=params, headers=ACME)

    assert response.status_code == 422, response.text
    assert field in [problem["field"] for problem in response.json()["detail"]]


BODY_CASES: list[tuple[dict[str, Any], str]] = [
    ({"type": "example.echo\x00", "payload": {"value": 1}}, "type"),
    ({"type": "example.echo", "payload": {"value": 1}, "subject": "a\x00b"}, "subject"),
    ({"type": "example.echo", "payload": {"value": 1, "tenant": "ac\x00me"}}, "payload.tenant"),
    ({"type": "import", "payload": {"source": "a\x00.csv", "dataset": "d"}}, "payload.source"),
    (
        {"type": "import", "payload": {"source": "a.csv", "dataset": "d", "k\x00": 1}},
        "payload.k\x00",
    ),
]


@pytest.mark.parametrize(("body", "field"), BODY_CASES)
def test_a_nul_in_a_job_body_is_422_naming_the_field_and_writes_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/jobs", json=body, headers=ACME)

    assert response.status_code in (403, 422), response.text
    assert field in [problem["field"] for problem in response.json()["detail"]]
    assert api.job_count() == 0


def test_a_nul_in_a_cancel_reason_is_422(client: TestClient) -> None:
    job = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 1}, "subject": "x"},
        headers=ACME,
    )
    assert job.status_code == 202
    response = client.post(
        f"/jobs/{job.json()['id']}/cancel", json={"reason": "because\x00"}, headers=ACME
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "reason"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(["type", "subject", "status", "since", "page", "limit"]),
    value=st.one_of(
        st.text(max_size=40),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    ),
)
def test_no_value_of_a_list_parameter_gets_a_server_error(
    client: TestClient, name: str, value: str
) -> None:
    response = client.get("/jobs", params={name: value}, headers=ACME)

    assert response.status_code in (200, 422), (name, value, response.text)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"subject": "a\x00b"}, "subject"),
        ({"created_by": "me\x00"}, "created_by"),
        ({"metadata": {"note": "\x00"}}, "metadata.note"),
    ],
)
def test_a_nul_in_a_producers_job_option_is_refused_at_delay(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        echo.apply_async(kwargs={"value": 1}, queue=api.unused_queue(), **options)
    with pytest.raises(InvalidPayload):
        echo.apply_many([{"value": 1}], queue=api.unused_queue(), **options)

    assert list(refused.value.fields) == [field]
    assert api.job_count() == 0


JSON = {**ACME, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"type": "example.echo", "payload": {"value": 1}, "subject": "\\ud800"}', "subject"),
        ('{"type": "example.echo", "payload": {"value": "a\\ud800"}}', "payload.value"),
    ],
)
def test_a_lone_surrogate_in_a_job_body_is_422_naming_the_field(
    client: TestClient, body: str, field: str
) -> None:
    response = client.post("/jobs", content=body, headers=JSON)

    assert response.status_code == 422, response.text
    assert field in [problem["field"] for problem in response.json()["detail"]]
    assert "surrogate" in response.text
    assert api.job_count() == 0


def test_a_lone_surrogate_in_a_cancel_reason_is_422(client: TestClient) -> None:
    job = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 1}, "subject": "x"},
        headers=ACME,
    )
    assert job.status_code == 202
    response = client.post(
        f"/jobs/{job.json()['id']}/cancel", content='{"reason": "\\ud800"}', headers=JSON
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "reason"


def test_a_deeply_nested_body_is_400_naming_the_body(client: TestClient) -> None:
    depth = 100_000
    response = client.post("/jobs", content="[" * depth + "]" * depth, headers=JSON)

    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"subject": "a\ud800"}, "subject"),
        ({"created_by": "\udfff"}, "created_by"),
        ({"metadata": {"note": "\ud800"}}, "metadata.note"),
        ({"metadata": {"a": float("nan")}}, "metadata.a"),
        ({"metadata": {"a": [float("inf")]}}, "metadata.a.0"),
    ],
)
def test_a_lone_surrogate_or_nan_in_a_producers_job_option_is_refused_at_delay(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        echo.apply_async(kwargs={"value": 1}, queue=api.unused_queue(), **options)

    assert list(refused.value.fields) == [field]
    assert api.job_count() == 0


def test_a_lone_surrogate_in_a_payload_is_refused_at_delay() -> None:
    with pytest.raises(InvalidPayload) as refused:
        echo.apply_async(kwargs={"value": "\ud800"}, queue=api.unused_queue())

    assert list(refused.value.fields) == ["value"]
    assert api.job_count() == 0
