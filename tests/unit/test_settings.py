"""Settings: the ledger's and each job type's, read once per process from the same
``JOBLEDGER_*`` variables, forgotten together; the built-in definitions a job type declares
reach the list beat creates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import settings
from tasks.export_data import ExportSettings
from tasks.sync_and_suggest import BudgetSchedule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    settings.cache_clear()
    yield
    settings.cache_clear()


def test_a_job_types_settings_are_read_once_and_forgotten_with_the_others(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_EXPORT_DIR", "/srv/first")
    assert settings.of(ExportSettings).export_dir == Path("/srv/first")

    monkeypatch.setenv("JOBLEDGER_EXPORT_DIR", "/srv/second")
    assert settings.of(ExportSettings).export_dir == Path("/srv/first")  # read once
    settings.cache_clear()
    assert settings.of(ExportSettings).export_dir == Path("/srv/second")


def test_a_malformed_job_type_setting_is_refused_naming_it(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_SYNC_INTERVAL", "0")
    with pytest.raises(ValueError, match="sync_interval"):
        settings.of(BudgetSchedule)


def test_the_built_in_definitions_hold_those_job_types_declare() -> None:
    """In a fresh process, as beat starts: the task modules imported, then the definitions."""
    budgets = [{"budget_id": "b1", "source": "/data/b1.csv", "tenant": "acme"}]
    env = {
        **os.environ,
        "JOBLEDGER_SCHEDULED_BUDGETS": json.dumps(budgets),
        "JOBLEDGER_SYNC_INTERVAL": "900",
    }
    code = (
        "import json, tasks\n"
        "from app.schedule import builtin_definitions\n"
        "made = {d.name: d for d in builtin_definitions()}\n"
        "entry = made['sync_and_suggest:b1']\n"
        "print(json.dumps([sorted(made), entry.schedule, entry.tenant]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    names, schedule, tenant = json.loads(done.stdout)
    assert names == ["lifeline", "purge", "settle_counts", "sync_and_suggest:b1"]
    assert schedule == {"every": 900}
    assert tenant == "acme"
