"""The built-in definitions: what they are made from, and a real ``celery -A app beat``
creating them and running them (trigger ``beat``, linked to their definition)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db
from app.celery import app
from app.config import Settings
from app.ledger import definitions
from app.schedule import builtin_definitions
from tasks.sync_and_suggest import BudgetSchedule, budget_runs, scheduled_budgets
from tests.support import ledger
from tests.support import ops as _ops  # noqa: F401  (registers lifeline in subprocesses)
from tests.support.processes import ROOT, WorkerProcess


def test_the_built_in_definitions_are_the_maintenance_jobs_and_the_budget_syncs() -> None:
    config = Settings(lifeline_interval=60, purge_at="04:15", settle_interval=45)
    budgets = BudgetSchedule(
        scheduled_budgets="b1=/data/b1.csv, b2=postgresql://u@db/src?x=1", sync_interval=900
    )

    made = {d.name: d for d in [*builtin_definitions(config), *budget_runs(budgets)]}

    assert {"lifeline", "purge", "settle_counts", "sync_and_suggest:b1"} <= set(made)
    assert (made["settle_counts"].type, made["settle_counts"].schedule) == (
        "settle_counts",
        {"every": 45},
    )
    assert (made["lifeline"].type, made["lifeline"].schedule) == ("lifeline", {"every": 60})
    assert made["purge"].type == "purge"
    assert made["purge"].schedule == {"cron": "15 4 * * *", "timezone": "UTC"}
    sync = made["sync_and_suggest:b2"]
    assert (sync.type, sync.schedule, sync.tenant) == (
        "sync_and_suggest",
        {"every": 900},
        "default",
    )
    assert sync.payload == {"budget_id": "b2", "source": "postgresql://u@db/src?x=1"}


def test_the_application_runs_the_ledger_scheduler_with_no_static_entries() -> None:
    assert app.conf.beat_scheduler == "app.ledger.runtime.beat:LedgerScheduler"
    # every built-in schedule is a definition, settle_counts included
    assert app.conf.beat_schedule == {}


def test_budgets_are_read_from_json_too() -> None:
    listed = scheduled_budgets(
        '[{"budget_id": 7, "source": "a,b.csv", "full_resync": true, "tenant": "acme"}]'
    )
    assert [(b.budget_id, b.source, b.full_resync, b.tenant) for b in listed] == [
        ("7", "a,b.csv", True, "acme")
    ]
    assert [b.budget_id for b in scheduled_budgets('{"x": "s1", "y": "s2"}')] == ["x", "y"]
    (made,) = budget_runs(BudgetSchedule(scheduled_budgets=json_budget()))
    assert made.name == "sync_and_suggest:7"
    assert made.payload["full_resync"] is True
    assert made.tenant == "acme"


def json_budget() -> str:
    return '[{"budget_id": 7, "source": "s", "full_resync": true, "tenant": "acme"}]'


@pytest.mark.parametrize("value", ["b1", "=src", '[{"budget_id": 1}]', "{bad json"])
def test_malformed_budgets_are_refused_with_the_accepted_forms(value: str) -> None:
    with pytest.raises(ValueError, match="JOBLEDGER_SCHEDULED_BUDGETS"):
        scheduled_budgets(value)


def test_a_malformed_purge_time_is_refused() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        builtin_definitions(Settings(purge_at="25:00"))


def test_a_real_beat_publishes_scheduled_runs_recorded_with_trigger_beat(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    source = tmp_path / "bank.csv"
    source.write_text("id,date,payee,amount,category\n1,2026-11-01,Grocer,-12.50,food\n")
    env = {
        **os.environ,
        "JOBLEDGER_LIFELINE_INTERVAL": "1",
        "JOBLEDGER_SYNC_INTERVAL": "1",
        "JOBLEDGER_SCHEDULED_BUDGETS": f"household={source}",
    }
    with (tmp_path / "beat.log").open("wb") as log:
        beat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app",
                "beat",
                "-s",
                str(tmp_path / "schedule"),
                "--pidfile",
                str(tmp_path / "beat.pid"),
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        rescue = _first_job_of_type("lifeline", 30, beat, tmp_path / "beat.log")
        sync = _first_job_of_type("sync_and_suggest", 30, beat, tmp_path / "beat.log")
        # the daily purge is a definition like any other: brought forward, it runs now
        definitions.update(
            "default", "purge", {"schedule": {"every": 1}}, actor="cli", changed_by="test"
        )
        purge = _first_job_of_type("purge", 30, beat, tmp_path / "beat.log")
        # beat stays up until they ran: stopped between recording a run and publishing
        # it, it would leave the run queued without a message (the lifeline's case)
        rescued = ledger.wait_for_status(rescue["id"], "succeeded")
        ledger.wait_for_status(sync["id"], "succeeded", "failed", "partial")
        ledger.wait_for_status(purge["id"], "succeeded")
    finally:
        beat.terminate()
        beat.wait(15)

    made = {d.name: d for d in definitions.list_("default")}
    for job, name in ((rescue, "lifeline"), (sync, "sync_and_suggest:household"), (purge, "purge")):
        assert (job["trigger"], job["created_by"]) == ("beat", "beat")
        assert job["definition_id"] == made[name].id
        assert job["scheduled_for"] is not None
    assert sync["subject"] == "household"
    assert sync["payload"]["source"]["path"] == str(source)
    assert rescued["result"]["failed"] == []


def _first_job_of_type(
    job_type: str, timeout: float, beat: subprocess.Popen[bytes], log: Path
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert beat.poll() is None, log.read_text(errors="replace")
        found = ledger.count("SELECT count(*) FROM jobs WHERE type = :t", t=job_type)
        if found:
            with db.engine().connect() as connection:
                row = (
                    connection.execute(
                        text("SELECT * FROM jobs WHERE type = :t ORDER BY created_at LIMIT 1"),
                        {"t": job_type},
                    )
                    .mappings()
                    .one()
                )
            return dict(row)
        time.sleep(0.1)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"beat published no {job_type} job in {timeout}s:\n{log.read_text()}")
