"""Idempotency keys: the same request made twice (or at once) creates one job, through
``apply_async``/``apply_many`` and through ``POST /jobs`` with ``Idempotency-Key``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from kombu import Connection
from kombu.exceptions import OperationalError

from app.exceptions import IdempotencyConflict, InvalidIdempotencyKey
from app.ledger import transitions
from app.ledger.transitions import NewJob
from app.queues import waiting
from tests.support import api
from tests.support import ledger as read
from tests.support.api import ACME, OTHER
from tests.support.jobs import echo
from tests.support.races import at_once

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    """A queue no worker consumes: what was published stays there to be counted."""
    name = api.unused_queue()
    yield name
    redis_client.delete(name)


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


# -- producers ---------------------------------------------------------------------------


def test_the_same_key_and_payload_give_the_same_job_and_one_message(
    queue: str, redis_client: redis.Redis
) -> None:
    first = echo.apply_async(kwargs={"value": 1}, queue=queue, idempotency_key="order-1")
    again = echo.apply_async(kwargs={"value": 1}, queue=queue, idempotency_key="order-1")

    assert again.id == first.id
    assert getattr(again, "replayed", False) is True
    assert not getattr(first, "replayed", False)
    assert api.job_count() == 1
    assert waiting(redis_client, queue) == 1  # published once
    assert read.transitions(first.id) == [(None, "queued")]


def test_the_same_key_with_another_payload_is_refused_and_writes_nothing(queue: str) -> None:
    echo.apply_async(kwargs={"value": 1}, queue=queue, idempotency_key="order-1")

    with pytest.raises(IdempotencyConflict, match="order-1"):
        echo.apply_async(kwargs={"value": 2}, queue=queue, idempotency_key="order-1")
    with pytest.raises(IdempotencyConflict):
        echo.apply_async(kwargs={"value": 1}, queue=queue, subject="x", idempotency_key="order-1")
    assert api.job_count() == 1


def test_keys_belong_to_a_tenant(queue: str) -> None:
    acme = echo.apply_async(kwargs={"value": 1}, queue=queue, tenant="acme", idempotency_key="k")
    other = echo.apply_async(kwargs={"value": 1}, queue=queue, tenant="other", idempotency_key="k")

    assert acme.id != other.id
    assert api.job_count() == 2


@pytest.mark.parametrize("key", ["", "x" * 201, "a\x00b", "tab\there", 42])
def test_a_malformed_key_is_refused_before_anything_is_written(queue: str, key: object) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        echo.apply_async(kwargs={"value": 1}, queue=queue, idempotency_key=key)
    assert api.job_count() == 0


def test_concurrent_calls_with_one_key_create_one_job(queue: str) -> None:
    ended = at_once(
        lambda: str(echo.apply_async(kwargs={"value": 7}, queue=queue, idempotency_key="race").id),
        8,
    )
    errors = [result for result in ended if isinstance(result, BaseException)]
    ids = [result for result in ended if isinstance(result, str)]

    assert errors == []
    assert len(set(ids)) == 1
    assert api.job_count() == 1


def test_a_batch_with_a_key_is_made_once(queue: str, redis_client: redis.Redis) -> None:
    payloads = [{"value": n} for n in range(3)]
    first = echo.apply_many(payloads, queue=queue, idempotency_key="batch-1")
    again = echo.apply_many(payloads, queue=queue, idempotency_key="batch-1")

    assert [r.id for r in again] == [r.id for r in first]
    assert all(getattr(r, "replayed", False) for r in again)
    assert api.job_count() == 3
    assert waiting(redis_client, queue) == 3
    with pytest.raises(IdempotencyConflict):
        echo.apply_many(payloads[:2], queue=queue, idempotency_key="batch-1")
    with pytest.raises(IdempotencyConflict):
        echo.apply_many([*payloads, {"value": 9}], queue=queue, idempotency_key="batch-1")
    assert api.job_count() == 3


def test_a_batch_whose_keys_are_partly_taken_records_none_of_its_jobs(queue: str) -> None:
    """Two batches racing with one key, the second one job longer: both looked the key up
    before either committed, so the second's insert meets ``raced#0`` and ``raced#1``
    taken. It must create nothing (it then finds the key used for another request);
    creating ``raced#2`` alone would publish one job of a batch that was refused."""
    echo.apply_many([{"value": 0}, {"value": 1}], queue=queue, idempotency_key="raced")
    longer = [
        NewJob(
            id=uuid.uuid4(),
            type="example.echo",
            payload={"value": n},
            queue=queue,
            idempotency_key=f"raced#{n}",
            request_digest="another batch",
        )
        for n in range(3)
    ]

    assert transitions.record_queued_many(longer) == set()
    assert api.job_count() == 2
    assert read.count("SELECT count(*) FROM job_events") == 2


def test_a_job_the_broker_refused_gives_its_key_back() -> None:
    nowhere = Connection(NOWHERE)
    with nowhere, pytest.raises(OperationalError):
        echo.apply_async(
            kwargs={"value": 1},
            producer=nowhere.Producer(),
            retry=False,
            queue=api.unused_queue(),
            idempotency_key="unsent",
        )

    again = echo.apply_async(
        kwargs={"value": 1}, queue=api.unused_queue(), idempotency_key="unsent"
    )
    assert not getattr(again, "replayed", False)
    assert read.job(again.id)["status"] == "queued"  # type: ignore[index]
    assert read.count("SELECT count(*) FROM jobs WHERE status = 'failed'") == 1


# -- POST /jobs --------------------------------------------------------------------------


def test_post_with_the_same_idempotency_key_and_body_answers_the_same_job(
    client: TestClient,
) -> None:
    body = {"type": "example.echo", "payload": {"value": 1}}
    headers = {**ACME, "Idempotency-Key": "5f0c7a52-1d2b-4c3e-9a8b-7c6d5e4f3a21"}

    created = client.post("/jobs", json=body, headers=headers)
    replayed = client.post("/jobs", json=body, headers=headers)

    assert created.status_code == 202
    assert replayed.status_code == 200
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["id"] == created.json()["id"]
    assert replayed.headers["location"] == created.headers["location"]
    assert api.job_count() == 1


def test_post_with_the_same_idempotency_key_and_another_body_is_409(client: TestClient) -> None:
    headers = {**ACME, "Idempotency-Key": "k-1"}
    client.post("/jobs", json={"type": "example.echo", "payload": {"value": 1}}, headers=headers)

    refused = client.post(
        "/jobs", json={"type": "example.echo", "payload": {"value": 2}}, headers=headers
    )

    assert refused.status_code == 409
    assert refused.json()["detail"][0]["field"] == "Idempotency-Key"
    assert api.job_count() == 1


def test_an_idempotency_key_is_scoped_to_the_keys_tenant(client: TestClient) -> None:
    body = {"type": "example.echo", "payload": {"value": 1}}
    mine = client.post("/jobs", json=body, headers={**ACME, "Idempotency-Key": "k"})
    theirs = client.post("/jobs", json=body, headers={**OTHER, "Idempotency-Key": "k"})

    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_malformed_idempotency_key_is_400_naming_the_header(client: TestClient) -> None:
    response = client.post(
        "/jobs",
        json={"type": "example.echo", "payload": {"value": 1}},
        headers={**ACME, "Idempotency-Key": "x" * 201},
    )

    assert response.status_code == 400
    assert response.json()["detail"][0]["field"] == "Idempotency-Key"
    assert api.job_count() == 0


def test_a_quoted_structured_field_key_is_the_same_key(client: TestClient) -> None:
    body = {"type": "example.echo", "payload": {"value": 1}}
    first = client.post("/jobs", json=body, headers={**ACME, "Idempotency-Key": '"abc"'})
    second = client.post("/jobs", json=body, headers={**ACME, "Idempotency-Key": "abc"})

    assert second.json()["id"] == first.json()["id"]
    assert uuid.UUID(first.json()["id"])
