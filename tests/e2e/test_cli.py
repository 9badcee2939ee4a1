"""The ``jobledger`` command: what an operator types, what a script reads, exit codes.

Most tests run the Typer app in-process (fast); the acceptance ones run the installed
console script as a subprocess, the way operators do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.support import ledger
from tests.support.cli import run, run_json
from tests.support.jobs import echo, fail
from tests.support.ops import backdate
from tests.support.processes import ROOT, WorkerProcess


def test_jobs_lists_newest_first_with_filters_and_pages(idle_queue: str) -> None:
    queue = idle_queue
    first = echo.apply_async(kwargs={"value": 1, "tenant": "acme"}, queue=queue)
    second = echo.apply_async(kwargs={"value": 2, "tenant": "globex"}, queue=queue)
    third = echo.apply_async(kwargs={"value": 3, "tenant": "acme"}, queue=queue)
    backdate(first.id, 7200)  # created two hours before the others

    everything = run_json("jobs")
    assert [j["id"] for j in everything["items"]][-1] == str(first.id)
    assert {j["id"] for j in everything["items"]} == {str(first.id), str(second.id), str(third.id)}

    acme = run_json("jobs", "--tenant", "acme")
    assert {j["id"] for j in acme["items"]} == {str(first.id), str(third.id)}
    page_one = run_json("jobs", "--limit", "2")
    page_two = run_json("jobs", "--limit", "2", "--page", "2")
    assert (page_one["has_more"], page_two["has_more"]) == (True, False)
    assert [j["id"] for j in page_two["items"]] == [str(first.id)]
    assert run_json("jobs", "--status", "failed")["items"] == []
    assert len(run_json("jobs", "--status", "Pending", "--since", "1h")["items"]) == 2

    code, out, _ = run("jobs", "--type", "example.echo")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "name",
        "id",
        "type",
        "status",
        "progress",
        "tenant",
        "queue",
        "attempts",
        "created_at",
        "duration",
    ]
    assert "page 1, 3 jobs of 3 in all (3 queued)" in out


def test_show_by_name_or_id_gives_the_job_its_events_and_logs(worker: WorkerProcess) -> None:
    job = echo.delay(value=42)
    ledger.wait_for_status(job.id, "succeeded")
    name = ledger.job(job.id)["name"]  # type: ignore[index]

    detail = run_json("show", name)
    assert detail["job"]["id"] == str(job.id)
    assert [(e["from_status"], e["to_status"]) for e in detail["events"]] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert [line["message"] for line in detail["logs"]] == ["echo 42"]

    code, out, _ = run("show", str(job.id))
    assert code == 0
    assert "status: succeeded" in out
    assert "echo 42" in out
    assert "events" in out


def test_a_malformed_job_id_is_a_usage_error_and_an_unknown_one_is_not_found() -> None:
    code, _, err = run("show", "12; drop table jobs")
    assert code == 2
    assert "is not a job id" in err

    code, _, err = run("show", str(uuid.uuid4()))
    assert code == 1
    assert "jobledger jobs" in err

    code, _, err = run("jobs", "--status", "sideways")
    assert code == 2
    assert "unknown job status" in err


def test_cancel_and_retry_from_the_command_line(worker: WorkerProcess, idle_queue: str) -> None:
    job = fail.delay(message="boom")
    ledger.wait_for_status(job.id, "failed")

    code, _, err = run("cancel", str(job.id))
    assert code == 1
    assert "it is failed" in err

    retried = run_json("retry", str(job.id))
    assert retried["job_id"] == str(job.id)
    ledger.wait_for_status(job.id, "failed")
    assert ledger.job(job.id)["attempts"] == 2  # type: ignore[index]

    queued = echo.apply_async(kwargs={"value": 9}, queue=idle_queue)
    code, out, _ = run("cancel", str(queued.id))
    assert code == 0
    assert "canceled: it will not run" in out
    assert ledger.job(queued.id)["status"] == "canceled"  # type: ignore[index]

    done = echo.delay(value=10)
    ledger.wait_for_status(done.id, "succeeded")
    code, _, err = run("retry", str(done.id))
    assert code == 1
    assert "retry applies to failed or canceled" in err


def test_stats_report_purge_and_lifeline_answer_in_json(idle_queue: str) -> None:
    echo.apply_async(kwargs={"value": 1}, queue=idle_queue)

    stats = run_json("stats")
    assert stats["by_status"]["queued"] == 1
    assert stats["live"] == 1
    assert stats["by_type"] == {"example.echo": {"queued": 1}}

    reports = run_json("report")
    assert set(reports) >= {"status-counts", "daily-summary", "recent-failures"}
    assert reports["status-counts"][0]["jobs"] == 1
    code, _, err = run("report", "nope")
    assert (code, "unknown report" in err) == (2, True)

    dry = run_json("purge", "--older-than", "0", "--dry-run")
    assert (dry["dry_run"], dry["deleted"]) == (True, 0)  # a queued job is never purged

    rescue = run_json("lifeline", "--timeout", "3600")
    assert rescue["failed"] == rescue["queued_failed"] == []


def test_the_console_script_runs_as_a_subprocess_with_exit_codes() -> None:
    env = os.environ.copy()
    script = os.path.join(os.path.dirname(sys.executable), "jobledger")

    migrated = subprocess.run([script, "migrate"], cwd=ROOT, env=env, capture_output=True)
    assert migrated.returncode == 0, migrated.stderr
    listed = subprocess.run(
        [script, "jobs", "--json"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["items"] == []
    bad = subprocess.run([script, "show", "nope"], cwd=ROOT, env=env, capture_output=True)
    assert bad.returncode == 2
    usage = subprocess.run([script, "jobs", "--limit", "0"], cwd=ROOT, env=env, capture_output=True)
    assert usage.returncode == 2


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_and_beat_wrappers_hand_over_to_celery(command: str) -> None:
    script = os.path.join(os.path.dirname(sys.executable), "jobledger")
    shown = subprocess.run(
        [script, command, "--", "--help"], cwd=ROOT, env=os.environ.copy(), capture_output=True
    )
    assert shown.returncode == 0
    assert f"celery {command} [OPTIONS]".encode() in shown.stdout  # celery's own help
