"""The README's main job (``bash .ci/demo`` runs ``python -m app.demo``) on the embedded
default, with no server: the demo's jobs end as it says, and the commands it prints at
the end work pasted into a shell, from another folder, as printed.

The scratch folder stands for the checkout (its ``.venv`` links to this one's); the worker
is started as ``.ci/demo`` starts it. Only the dashboard's port is changed from the
printed 8000 to a free one, so that the test does not depend on 8000 being free.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.testing.workers import start_worker
from tests.support.api_server import free_port
from tests.support.processes import ROOT

VENV = Path(sys.executable).parent.parent


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


@pytest.fixture
def shell_env() -> dict[str, str]:
    """A user's shell: no ``JOBLEDGER_*`` variable (this checkout's code on the path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def demo_worker(checkout: Path, shell_env: dict[str, str]) -> Iterator[None]:
    subprocess.run(
        [".venv/bin/jobledger", "migrate"], cwd=checkout, env=shell_env, check=True, timeout=120
    )
    # started as .ci/demo starts it, by the project's launcher (ready: its log says so)
    worker = start_worker(checkout, env=shell_env, cwd=checkout, prefix="demo", ready="log")
    yield
    worker.stop(timeout=60)


@pytest.mark.usefixtures("demo_worker")
def test_the_demo_runs_with_no_server_and_its_closing_commands_work_as_printed(
    checkout: Path, shell_env: dict[str, str]
) -> None:
    demo = subprocess.run(
        [".venv/bin/python", "-m", "app.demo"],
        cwd=checkout,
        env=shell_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    outcomes = {
        line[:32].strip(): line[32:].split()[1]
        for line in out.splitlines()
        if line.startswith(("import (", "sync_and_suggest ", "export "))
    }
    assert outcomes == {
        "import (3 bad rows)": "partial",
        "sync_and_suggest": "succeeded",
        "import (missing file)": "failed",
        "import (canceled while queued)": "canceled",
        "export": "succeeded",
    }, out
    assert (checkout / "var" / "jobledger.sqlite3").exists()
    assert "No server was used" in out
    chain = re.search(r"jobledger show (\w+)", out)
    assert chain is not None, out

    commands = [line.strip() for line in out.splitlines() if line.startswith("  cd ")]
    jobs, show, api, switch = commands
    listed = _paste(jobs, shell_env)
    assert "page 1, 5 jobs" in listed, listed
    assert chain.group(1) in _paste(show, shell_env)
    assert "JOBLEDGER_DATABASE_URL=postgresql://" in switch
    assert switch.endswith("bash .ci/demo")

    key = re.search(r"log in with the key (\S+)", out)
    assert key is not None, out
    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", api.replace("--port 8000", f"--port {port}")],
        cwd="/",
        env=shell_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # uvicorn under bash: stop the whole group
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            _wait_for(browser)
            login = browser.post("/dashboard/login", data={"key": key.group(1)})
            page = browser.get("/dashboard")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    assert "http://127.0.0.1:8000/dashboard/login" in out
    assert login.status_code == 303
    assert page.status_code == 200
    assert chain.group(1) in page.text


def _paste(command: str, env: dict[str, str]) -> str:
    """Run a printed command line as a user pasting it would, from another folder."""
    done = subprocess.run(
        ["bash", "-c", command], cwd="/", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait_for(browser: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            browser.get("/openapi.json")
            return
        except httpx.TransportError:
            time.sleep(0.2)  # not listening yet
    raise AssertionError("the API did not start")
