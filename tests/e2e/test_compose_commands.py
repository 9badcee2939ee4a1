"""The commands of docker-compose.yml, run as processes (asked for their help): they resolve
the project's app and subcommands (the file itself: tests/unit/test_compose.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document["services"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("service", "subcommand"), [("worker", "worker"), ("beat", "beat"), ("flower", "flower")]
)
def test_celery_services_run_the_project_app(
    services: dict[str, Any], service: str, subcommand: str
) -> None:
    command = services[service]["command"]
    assert command[:4] == ["celery", "-A", "app", subcommand]
    # the same command line, asked for its help, must resolve the app and the subcommand
    shown = subprocess.run(
        [sys.executable, "-m", *command[:4], "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr


def test_the_migrate_command_exists(services: dict[str, Any]) -> None:
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "jobledger"), "migrate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
