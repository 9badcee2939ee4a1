"""Out-of-range options of the ``jobledger`` console script: exit 2 with a message that
names the option, never a traceback (run as a subprocess, the way operators do)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

SCRIPT = os.path.join(os.path.dirname(sys.executable), "jobledger")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["jobs", "--page", str(10**24)], "--page"),
        (["jobs", "--since", "9999-12-31T23:59:59-14:00"], "--since"),
        (["jobs", "--since", "0001-01-01T00:00:00+14:00"], "--since"),
        (["jobs", "--since", "99999999999999d"], "--since"),
        (["jobs", "--since", "9" * 5000 + "d"], "--since"),
        (["jobs", "--since", "garbage"], "--since"),
        (["stats", "--since", "9999-12-31T23:59:59-14:00"], "--since"),
        (["show", "00000000-0000-0000-0000-000000000000", "--logs", str(10**24)], "--logs"),
        (["report", "daily-summary", "--limit", str(10**24)], "--limit"),
        (["purge", "--older-than", str(10**24), "--dry-run"], "--older-than"),
        (["purge", "--batch-size", str(10**24), "--dry-run"], "--batch-size"),
        (["lifeline", "--timeout", str(10**24)], "--timeout"),
    ],
)
def test_an_out_of_range_option_exits_2_naming_it_without_a_traceback(
    args: list[str], named: str
) -> None:
    done = subprocess.run(
        [SCRIPT, *args], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True
    )

    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
