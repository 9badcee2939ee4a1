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
#: Keys of tenant acme with an explicit role (ACME_KEY has none: it is an admin).
VIEWER_KEY = "viewer-" + uuid.uuid4().hex
OPERATOR_KEY = "operator-" + uuid.uuid4().hex
ACME = {"Authorization": f"Bearer {ACME_KEY}"}
OTHER = {"X-API-Key": OTHER_KEY}
VIEWER = {"Authorization": f"Bearer {VIEWER_KEY}"}
OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
#: Each test key's ``JOBLEDGER_API_KEYS`` entry (the role left out where a key has none).
KEY_ENTRIES: dict[str, dict[str, str]] = {
    ACME_KEY: {"name": "ci-bot", "tenant": "acme"},
    OTHER_KEY: {"name": "intruder", "tenant": "other"},
    VIEWER_KEY: {"name": "watcher", "tenant": "acme", "role": "viewer"},
    OPERATOR_KEY: {"name": "on-call", "tenant": "acme", "role": "operator"},
}


def keyring() -> KeyRing:
    return KeyRing({digest_of(key): ApiKey(**entry) for key, entry in KEY_ENTRIES.items()})  # type: ignore[arg-type]


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
