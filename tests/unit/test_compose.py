"""docker-compose.yml cannot run here (no Docker engine): keep it honest by reading it (its
commands against the real entry points: tests/e2e/test_compose_commands.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document["services"]  # type: ignore[no-any-return]


def test_it_names_every_service(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "migrate", "worker", "beat", "flower"} <= set(services)


def test_migrate_is_one_shot_and_runs_first(services: dict[str, Any]) -> None:
    assert services["migrate"]["command"] == ["jobledger", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in ("worker", "beat", "flower"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_flower_api_is_protected_by_basic_auth(services: dict[str, Any]) -> None:
    environment = services["flower"]["environment"]
    assert "FLOWER_BASIC_AUTH" in environment
    assert "FLOWER_UNAUTHENTICATED_API" not in environment


def test_the_database_and_broker_point_at_the_compose_services(services: dict[str, Any]) -> None:
    environment = services["worker"]["environment"]
    assert "@postgres:5432/" in environment["JOBLEDGER_DATABASE_URL"]
    assert environment["JOBLEDGER_BROKER_URL"].startswith("redis://redis:6379")
