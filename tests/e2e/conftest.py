"""End-to-end tests: real ``celery -A app worker`` processes on the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture(autouse=True)
def _clean_ledger(clean_ledger: None) -> None:
    """Every test of this layer starts with an empty ledger and an empty broker db."""


@pytest.fixture
def idle_queue(redis_client: redis.Redis) -> Iterator[str]:
    """A queue no worker consumes: its jobs stay queued."""
    name = f"jobledger-test-{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name)
