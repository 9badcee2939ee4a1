"""Support for the API and dashboard tests: two tenants' keys and a client of the app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.api.auth import ApiKey, KeyRing, digest_of
from app.api.main import create_app
from app.db import engine
from models.tables import jobs

#: Keys as a client holds them; the app only knows their digests.
ACME_KEY = "acme-" + uuid.uuid4().hex
OTHER_KEY = "other-" + uuid.uuid4().hex
ACME = {"Authorization": f"Bearer {ACME_KEY}"}
OTHER = {"X-API-Key": OTHER_KEY}


def keyring() -> KeyRing:
    return KeyRing(
        {
            digest_of(ACME_KEY): ApiKey(name="ci-bot", tenant="acme"),
            digest_of(OTHER_KEY): ApiKey(name="intruder", tenant="other"),
        }
    )


def client() -> Iterator[TestClient]:
    """A client of a fresh app (its lifespan runs: job types registered)."""
    with TestClient(create_app(keyring())) as test_client:
        yield test_client


def job_count() -> int:
    with engine().connect() as connection:
        return int(connection.execute(select(func.count()).select_from(jobs)).scalar_one())


def unused_queue() -> str:
    """A queue no worker consumes (its Redis key is removed by the per-test clean-up)."""
    return f"jobledger-test:api-{uuid.uuid4().hex[:8]}"


def statuses(body: dict[str, Any]) -> list[str]:
    return [item["status"] for item in body["items"]]
