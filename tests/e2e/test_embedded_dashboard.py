"""The dashboard on the embedded default's SQLite ledger, as ``bash .ci/demo`` tells a user
to open it: a real uvicorn process, a login with a key, the jobs page over the session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import ACME_KEY
from tests.support.api_server import ApiServer, start_api_server
from tests.support.processes import ROOT


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> str:
    """A migrated SQLite ledger holding one queued job of tenant ``acme``."""
    url = f"sqlite:///{tmp_path / 'var' / 'jobledger.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env.update(PYTHONPATH=str(ROOT), JOBLEDGER_DATABASE_URL=url)
    jobledger = str(Path(sys.executable).parent / "jobledger")
    subprocess.run([jobledger, "migrate"], cwd=tmp_path, env=env, check=True, timeout=120)
    produce = (
        "from tasks import export_data\n"
        "export_data.apply_async(kwargs={'dataset': 'ledger:jobs'}, tenant='acme',"
        " queue='nobody')\n"
    )
    subprocess.run([sys.executable, "-c", produce], cwd=tmp_path, env=env, check=True, timeout=120)
    return url


@pytest.fixture
def api_on_sqlite(tmp_path: Path, sqlite_ledger: str) -> Iterator[ApiServer]:
    server = start_api_server(tmp_path, JOBLEDGER_DATABASE_URL=sqlite_ledger)
    yield server
    server.stop()


def test_a_login_holds_and_the_dashboard_lists_the_jobs_on_sqlite(
    api_on_sqlite: ApiServer,
) -> None:
    with httpx.Client(base_url=api_on_sqlite.url) as browser:
        login = browser.post("/dashboard/login", data={"key": ACME_KEY})
        page = browser.get("/dashboard")

    assert login.status_code == 303, login.text
    assert page.status_code == 200, api_on_sqlite.log()  # a lost session sends back to login
    assert "tenant <b>acme</b>" in page.text
    assert "ledger:jobs" in page.text
