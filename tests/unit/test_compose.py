"""docker-compose.yml cannot run here (no Docker engine): keep it honest by reading it (its
commands against the real entry points: tests/e2e/test_compose_commands.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.health import build_parser

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
    assert "redis://redis:6379" in environment["JOBLEDGER_BROKER_URL"]


#: Services that run for good (everything but the one-shot migrate).
LONG_RUNNING = ("postgres", "redis", "worker", "beat", "flower", "api")


def health_arguments(test: list[str]) -> list[str]:
    """The arguments after ``python -m app.health`` of a healthcheck's test."""
    if test[0] == "CMD-SHELL":
        words = shlex.split(test[1].replace("$$HOSTNAME", "worker-host"))
    else:
        assert test[0] == "CMD"
        words = test[1:]
    assert words[:3] == ["python", "-m", "app.health"], words
    return words[3:]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_restarts_and_has_a_healthcheck(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["restart"] in {"always", "unless-stopped", "on-failure"}
    check = service["healthcheck"]
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check.get("retries", 3) >= 1


@pytest.mark.parametrize("name", ["worker", "beat", "flower", "api"])
def test_the_application_healthchecks_are_commands_app_health_accepts(
    services: dict[str, Any], name: str
) -> None:
    arguments = health_arguments(services[name]["healthcheck"]["test"])
    parsed = build_parser().parse_args(arguments)
    expected = {"worker": "worker", "beat": "beat", "flower": "http", "api": "http"}[name]
    assert parsed.check == expected
    if name == "api":
        assert parsed.url == "http://127.0.0.1:8000/healthz"
        assert "8000:8000" in services["api"]["ports"]
    if name == "flower":
        assert parsed.url == "http://127.0.0.1:5555/healthcheck"


def test_the_worker_check_pings_the_node_name_the_worker_has(services: dict[str, Any]) -> None:
    # started without -n/--hostname, a worker is celery@<hostname>: what the check pings
    command = services["worker"]["command"]
    assert not {"-n", "--hostname"} & set(command)
    assert not any(part.startswith("--hostname=") for part in command)
    parsed = build_parser().parse_args(health_arguments(services["worker"]["healthcheck"]["test"]))
    assert parsed.node == "celery@worker-host"


def test_rabbitmq_is_a_profile_the_broker_url_can_point_at(services: dict[str, Any]) -> None:
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"]  # not started by a plain `docker compose up`
    assert rabbitmq["image"].startswith("rabbitmq:")
    assert "rabbitmqdata:/var/lib/rabbitmq" in rabbitmq["volumes"]  # durable queues survive
    for name in ("worker", "beat", "flower", "api", "migrate"):
        url = services[name]["environment"]["JOBLEDGER_BROKER_URL"]
        assert url == "${JOBLEDGER_BROKER_URL:-redis://redis:6379/0}", name


def test_rabbitmq_lets_a_job_run_as_long_as_its_time_limit(services: dict[str, Any]) -> None:
    """RabbitMQ closes the channel of a delivery unacknowledged past consumer_timeout:
    it must outlast the default hard time limit (app/config.py, 3300 s)."""
    from app.config import Settings

    arguments = services["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    milliseconds = int(arguments.split("consumer_timeout", 1)[1].split()[0])
    assert milliseconds / 1000 > Settings.model_fields["time_limit"].default
