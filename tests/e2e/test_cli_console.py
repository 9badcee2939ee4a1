"""The console commands of ``jobledger``: --version, submit, jobs --watch, the search
options, bulk cancel|retry and operations, on the real ledger, broker and worker."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from importlib.metadata import version

import pytest
import redis

from tests.support import ledger
from tests.support.cli import run, run_json
from tests.support.jobs import echo, fail, gate_key, gated
from tests.support.ops import wait_at
from tests.support.processes import ROOT, WorkerProcess

SCRIPT = os.path.join(os.path.dirname(sys.executable), "jobledger")


def test_version_is_the_installed_packages() -> None:
    shown = subprocess.run([SCRIPT, "--version"], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"jobledger {version('jobledger')}"


def test_submit_creates_a_job_a_worker_runs(worker: WorkerProcess) -> None:
    made = run_json("submit", "example.echo", "--field", "value=5", "--tenant", "acme")
    done = ledger.wait_for_status(made["id"], "succeeded")

    assert (done["tenant"], done["payload"], done["created_by"]) == (
        "acme",
        {"value": 5, "tenant": "acme"},
        getpass.getuser(),
    )
    assert done["result"]["value"] == 5
    assert ledger.events(made["id"])[0]["actor_name"] == getpass.getuser()

    from_json = run_json("submit", "example.echo", "--payload", '{"value": 6}')
    assert ledger.wait_for_status(from_json["id"], "succeeded")["tenant"] == "default"


def test_submit_refuses_bad_input_naming_it_and_records_nothing() -> None:
    before = ledger.count("SELECT count(*) FROM jobs")
    for args, named in (
        (["example.echo", "--field", "value=x"], "value"),
        (["example.echo", "--payload", "{nope"], "--payload"),
        (["example.echo", "--payload", "[1]"], "--payload"),
        (["example.echo", "--field", "novalue"], "--field"),
        (["no.such.type"], "unknown job type 'no.such.type'"),
    ):
        code, _, err = run("submit", *args)
        assert code == 2, (args, err)
        assert named in err, (args, err)
    assert ledger.count("SELECT count(*) FROM jobs") == before


def test_jobs_takes_the_search_options(idle_queue: str) -> None:
    kept = echo.apply_async(kwargs={"value": 1, "tenant": "acme"}, queue=idle_queue)
    echo.apply_async(kwargs={"value": 2, "tenant": "globex"}, queue=idle_queue)
    name = ledger.job(kept.id)["name"]  # type: ignore[index]

    found = run_json("jobs", "--q", name, "--queue", idle_queue, "--tenant", "acme")
    assert [item["id"] for item in found["items"]] == [str(kept.id)]
    assert found["total"] == 1
    assert run_json("jobs", "--queue", idle_queue)["total"] == 2  # every tenant
    assert run_json("jobs", "--dead", "--queue", idle_queue)["items"] == []
    code, _, err = run("jobs", "--sort", "size")
    assert code == 2
    assert "sort: 'size' is not one of" in err


def test_jobs_watch_refreshes_until_its_count_and_shows_the_change(
    worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    job = gated.apply_async(kwargs={"gate": gate, "steps": 1})
    wait_at(redis_client, gate)
    watching = subprocess.Popen(
        [SCRIPT, "jobs", "--watch", "--interval", "0.2", "--watch-count", "40", "--q", str(job.id)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the table shows the job running before it is let go, and finished after
    first = watching.stdout.readline()  # type: ignore[union-attr]
    assert first.split()[0] == "name"
    seen = first
    while "running" not in seen:
        seen += watching.stdout.readline()  # type: ignore[union-attr]
    redis_client.rpush(gate_key(gate), 1)
    # read on through the same buffered stream: communicate() reads the raw pipe and would
    # miss what readline() has buffered already (a table's caption, under load)
    out = watching.stdout.read()  # type: ignore[union-attr]
    err = watching.stderr.read()  # type: ignore[union-attr]
    watching.wait(timeout=60)

    assert watching.returncode == 0, err
    assert "succeeded" in out
    assert (seen + out).count("page 1, 1 jobs of 1 in all") == 40  # one table per refresh


def test_bulk_dry_run_then_retry_once_and_never_another_tenants_jobs(
    worker: WorkerProcess,
) -> None:
    mine = [
        str(fail.apply_async(kwargs={"message": "cli-bulk"}, tenant="acme").id) for _ in range(2)
    ]
    theirs = str(fail.apply_async(kwargs={"message": "cli-bulk"}, tenant="globex").id)
    for job_id in [*mine, theirs]:
        ledger.wait_for_status(job_id, "failed")
    their_events = ledger.events(theirs)
    options = ["--name", "again", "--tenant", "acme", "--status", "failed", "--q", "cli-bulk"]

    code, out, _ = run("bulk", "retry", *options, "--dry-run")
    assert code == 0
    assert "retry would act on 2 jobs of tenant 'acme' (dry run)" in out
    assert ledger.count("SELECT count(*) FROM job_operations") == 0

    declined = run("bulk", "retry", *options, stdin="n\n")
    assert declined[0] == 1
    assert ledger.count("SELECT count(*) FROM job_operations") == 0

    first = run_json("bulk", "retry", *options, "--yes")
    assert (first["status"], first["matched"], first["done"]) == ("done", 2, 2)
    for job_id in mine:
        ledger.wait_for_status(job_id, "failed")  # ran again, failed again
        assert ledger.job(job_id)["operation_id"] == first["id"]  # type: ignore[index]
        assert ledger.has_valid_history(job_id)
    events = {job_id: ledger.events(job_id) for job_id in mine}

    again = run_json("bulk", "retry", *options, "--yes")
    assert again == first  # the recorded operation: nothing acted on twice
    assert {job_id: ledger.events(job_id) for job_id in mine} == events
    assert ledger.events(theirs) == their_events

    listed = run_json("operations", "list", "--tenant", "acme")
    assert [item["name"] for item in listed["items"]] == ["again"]
    assert run_json("operations", "list", "--tenant", "globex")["items"] == []
    shown = run_json("operations", "show", str(first["id"]), "--tenant", "acme")
    assert shown["filter"] == {"q": "cli-bulk", "status": ["failed"]}
    assert shown["created_by"] == getpass.getuser()
    code, _, err = run("operations", "show", str(first["id"]), "--tenant", "globex")
    assert code == 1
    assert "no operation" in err


def test_bulk_cancel_shows_progress_and_refuses_over_the_limit(
    idle_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import settings

    ids = [str(echo.apply_async(kwargs={"value": n}, queue=idle_queue).id) for n in range(3)]
    monkeypatch.setenv("JOBLEDGER_BULK_MAX_JOBS", "2")
    settings.cache_clear()
    try:
        code, _, err = run("bulk", "cancel", "--name", "big", "--queue", idle_queue, "--yes")
        assert code == 1
        assert "3 jobs match" in err
        assert all(ledger.job(i)["status"] == "queued" for i in ids)  # type: ignore[index]

        monkeypatch.setenv("JOBLEDGER_BULK_MAX_JOBS", "3")
        monkeypatch.setenv("JOBLEDGER_BULK_BATCH_SIZE", "2")
        settings.cache_clear()
        code, out, err = run("bulk", "cancel", "--name", "big", "--queue", idle_queue, "--yes")
    finally:
        settings.cache_clear()
    assert code == 0, err
    assert err.splitlines() == ["big: 2 done, 0 skipped of 3", "big: 3 done, 0 skipped of 3"]
    assert "status: done" in out
    assert all(ledger.job(i)["status"] == "canceled" for i in ids)  # type: ignore[index]
    assert [e["actor"] for e in ledger.events(ids[0])] == ["producer", "cli"]
