"""Running ``jobledger`` in the test's process (Typer's runner): what an operator types,
what it prints, its exit code."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from app.cli import cli

runner = CliRunner()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``jobledger *args``."""
    result = runner.invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> Any:
    """The JSON document ``jobledger *args --json`` prints (it must exit 0)."""
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)
