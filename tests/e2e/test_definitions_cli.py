"""``jobledger definitions …``: what an operator types, what a script reads, exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import cli
from app.db import engine
from tests.support import ledger
from tests.support.processes import WorkerProcess

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_definitions(clean_ledger: None) -> None:
    """Definitions outlive the jobs' clean-up: every test starts without any."""
    with engine().begin() as connection:
        connection.execute(text("TRUNCATE job_definition_changes, job_definitions CASCADE"))


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["definitions", *args])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def written() -> tuple[int, int]:
    return (
        ledger.count("SELECT count(*) FROM job_definitions"),
        ledger.count("SELECT count(*) FROM job_definition_changes"),
    )


def test_create_show_list_update_enable_disable_archive() -> None:
    created = run_json(
        "create", "often", "--type", "example.echo", "--payload", '{"value": 1}', "--every", "30"
    )
    assert created["name"] == "often"
    assert created["tenant"] == "default"
    assert created["schedule"] == {"every": 30}
    assert created["schedule_text"] == "every 30 s"
    assert created["next_run_at"]
    assert created["version"] == 1

    shown = run_json("show", "often")
    assert shown["id"] == created["id"]
    assert [item["name"] for item in run_json("list")["items"]] == ["often"]

    updated = run_json("update", "often", "--payload", '{"value": 2}')
    assert (updated["version"], updated["payload"]["value"]) == (2, 2)
    cron = run_json("update", "often", "--cron", "0 3 * * *", "--timezone", "Europe/Paris")
    assert cron["schedule"] == {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    assert "Europe/Paris" in cron["schedule_text"]

    as_json = run_json("update", "often", "--schedule", '{"every": 60}')
    assert (as_json["schedule"], as_json["version"]) == ({"every": 60}, 4)

    disabled = run_json("disable", "often")
    assert (disabled["enabled"], disabled["next_run_at"]) == (False, None)
    enabled = run_json("enable", "often")
    assert enabled["enabled"] is True
    assert enabled["next_run_at"] is not None

    archived = run_json("archive", "often")
    assert archived["archived"] is True
    assert run_json("list")["items"] == []
    assert [item["name"] for item in run_json("list", "--all")["items"]] == ["often"]
    code, _, err = run("run", "often")
    assert code == 2
    assert "archived" in err

    with engine().connect() as connection:
        history = connection.execute(
            text("SELECT version, actor FROM job_definition_changes ORDER BY id")
        ).all()
    assert [tuple(row) for row in history] == [(v, "cli") for v in range(1, 8)]


def test_the_human_output_names_the_schedule() -> None:
    run("create", "often", "--type", "example.echo", "--payload", '{"value": 1}', "--every", "30")

    code, out, _ = run("list")
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["name", "type", "enabled"]
    assert "every 30 s" in out
    code, out, _ = run("show", "often")
    assert code == 0
    assert "every 30 s" in out


def test_definitions_belong_to_their_tenant() -> None:
    run_json(
        "create", "often", "--type", "example.echo", "--payload", '{"value": 1}', "--tenant", "acme"
    )

    assert run_json("list")["items"] == []
    assert [item["name"] for item in run_json("list", "--tenant", "acme")["items"]] == ["often"]
    for command in ("show", "run", "runs", "disable"):
        code, _, err = run(command, "often")
        assert code == 2, command
        assert "often" in err
    assert written() == (1, 1)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--type", "example.echo", "--payload", '{"value": 1}', "--cron", "61 * * * *"],
            "schedule.cron",
        ),
        (
            [
                "--type",
                "example.echo",
                "--payload",
                '{"value": 1}',
                "--cron",
                "* * * * *",
                "--timezone",
                "Mars/Olympus",
            ],
            "schedule.timezone",
        ),
        (["--type", "example.echo", "--payload", '{"value": 1}', "--every", "0"], "schedule.every"),
        (["--type", "example.nope", "--payload", '{"value": 1}'], "type"),
        (["--type", "example.echo", "--payload", '{"value": "x"}'], "value"),
        (["--type", "example.echo", "--payload", "{not json"], "--payload"),
        (["--type", "example.echo", "--payload", "[1]"], "--payload"),
        (
            [
                "--type",
                "example.echo",
                "--payload",
                '{"value": 1}',
                "--every",
                "5",
                "--cron",
                "* * * * *",
            ],
            "--cron",
        ),
        (
            ["--type", "example.echo", "--payload", '{"value": 1}', "--timezone", "UTC"],
            "--timezone",
        ),
        (
            ["--type", "example.echo", "--payload", '{"value": 1}', "--catch-up", "twice"],
            "catch_up",
        ),
    ],
)
def test_bad_input_exits_2_with_the_message_and_writes_nothing(args: list[str], words: str) -> None:
    code, out, err = run("create", "nightly", *args)

    assert code == 2, (out, err)
    assert words in err
    assert written() == (0, 0)


def test_a_duplicate_name_exits_2_and_a_bad_update_changes_nothing() -> None:
    run_json("create", "nightly", "--type", "example.echo", "--payload", '{"value": 1}')

    code, _, err = run("create", "nightly", "--type", "example.echo", "--payload", '{"value": 2}')
    assert code == 2
    assert "nightly" in err
    for args in (
        ["--cron", "nope"],
        ["--payload", '{"value": "x"}'],
        ["--every", "-1"],
        ["--schedule", '{"every": 5, "cron": "* * * * *"}'],
        ["--schedule", "5"],
        ["--schedule", '{"every": 5}', "--cron", "* * * * *"],
        [],
    ):
        code, _, err = run("update", "nightly", *args)
        assert code == 2, (args, err)
        assert err
    assert run_json("show", "nightly")["version"] == 1
    assert written() == (1, 1)


def test_run_and_runs(worker: WorkerProcess) -> None:
    run_json("create", "nightly", "--type", "example.echo", "--payload", '{"value": 4}')

    job = run_json("run", "nightly")

    assert job["trigger"] == "manual"
    assert job["definition"] == "nightly"
    assert job["type"] == "example.echo"
    ledger.wait_for_status(job["id"], "succeeded")
    runs = run_json("runs", "nightly")
    assert [item["id"] for item in runs["items"]] == [job["id"]]
    assert runs["total"] == 1
    assert run_json("show", "nightly")["last_status"] == "succeeded"
    code, out, _ = run("runs", "nightly")
    assert code == 0
    assert job["id"] in out


def test_init_creates_the_built_in_definitions_once_and_keeps_an_edit() -> None:
    created = run_json("init")["created"]

    names = {item["name"] for item in created}
    assert {"purge", "lifeline"} <= names
    assert all(item["tenant"] == "default" and item["next_run_at"] for item in created)
    listed = {item["name"] for item in run_json("list")["items"]}
    assert names <= listed
    run_json("update", "lifeline", "--every", "120")
    assert run_json("init")["created"] == []
    assert run_json("show", "lifeline")["schedule"] == {"every": 120}
    code, out, _ = run("init")
    assert code == 0
    assert "exists already" in out
