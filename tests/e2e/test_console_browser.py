"""The console in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against a real API server, a real worker and PostgreSQL.

What an operator does, end to end: a viewer sees no action buttons; an operator watches
a running job's bar move without a reload, cancels a job from its page, runs a bulk retry
over a filter (dry-run count first, then confirms) and searches by run name; the list at
phone width. Screenshots are saved under ``artifacts/browser/`` (gitignored; the path is
printed) as the run's evidence.

Playwright cannot download a browser here, so it is pointed at ``/usr/bin/chromium``
(``JOBLEDGER_TEST_CHROMIUM`` overrides). Without it the test is skipped with the reason,
except under ``CI=true``, where a missing browser is a failure: ``.ci/setup`` installs it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.api.auth import digest_of
from tests.support import ledger
from tests.support.api_server import ApiServer, start_api_server
from tests.support.jobs import fail, gate_key, gate_redis, gated
from tests.support.processes import ROOT, WorkerProcess

CHROMIUM = os.environ.get("JOBLEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
VIEWER_KEY = "viewer-" + uuid.uuid4().hex
OPERATOR_KEY = "operator-" + uuid.uuid4().hex
OTHER_KEY = "other-" + uuid.uuid4().hex
#: How long the browser waits for a page to show a state (the console polls every 2 s).
WAIT_MS = 20_000

if not Path(CHROMIUM).exists():
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"CI=true but no Chromium at {CHROMIUM}: run .ci/setup")
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/setup does)",
        allow_module_level=True,
    )

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = playwright.expect


#: Requests a page made to another origin (none allowed).
FOREIGN: list[str] = []


@pytest.fixture(autouse=True)
def _nothing_from_elsewhere() -> Iterator[None]:
    FOREIGN.clear()
    yield
    assert FOREIGN == [], "the console must work offline: no CDN, no remote asset"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ledger_database: str) -> Iterator[ApiServer]:
    """The API and console with a viewer's, an operator's and another tenant's key."""
    keys = {
        digest_of(VIEWER_KEY): {"name": "ada-viewer", "tenant": "acme", "role": "viewer"},
        digest_of(OPERATOR_KEY): {"name": "bob-operator", "tenant": "acme", "role": "operator"},
        digest_of(OTHER_KEY): {"name": "eve", "tenant": "other", "role": "operator"},
    }
    started = start_api_server(
        tmp_path_factory.mktemp("console-api"), JOBLEDGER_API_KEYS=json.dumps(keys)
    )
    yield started
    started.stop()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the screenshots go (printed, so a CI log says where to look)."""
    folder = ROOT / "artifacts" / "browser" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def logged_in(browser: Any, server: ApiServer, key: str, width: int = 1280) -> Any:
    """A fresh browser page logged in with ``key`` through the login form. Any request
    to another origin fails the test: the console works offline (no CDN, no font)."""
    context = browser.new_context(viewport={"width": width, "height": 900})

    def offline(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            FOREIGN.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.url}/dashboard")
    assert page.url.endswith("/dashboard/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/dashboard")
    return page


def running_gated(gate: str, steps: int) -> Any:
    """An ``example.gated`` job of acme, once a worker runs it (it waits at its gate)."""
    job = gated.apply_async(kwargs={"gate": gate, "steps": steps}, tenant="acme")
    ledger.wait_for_status(job.id, "running")
    return job


def open_gate(gate: str) -> None:
    gate_redis().rpush(gate_key(gate), 1)  # the tests' Redis, whichever the broker


def test_a_viewer_sees_no_action_buttons(
    browser: Any, server: ApiServer, worker: WorkerProcess, artifacts: Path, gate: str
) -> None:
    failed = fail.apply_async(kwargs={"message": "boom"}, tenant="acme")
    ledger.wait_for_status(failed.id, "failed")
    running = running_gated(gate, 2)
    page = logged_in(browser, server, VIEWER_KEY)

    assert page.locator(f'tr[data-job="{failed.id}"]').count() == 1
    assert page.get_by_role("button", name=re.compile("^(Cancel|Retry)")).count() == 0
    assert page.locator("#bulk").count() == 0
    page.screenshot(path=artifacts / "viewer-jobs.png", full_page=True)
    page.goto(f"{server.url}/dashboard/jobs/{running.id}")
    assert page.get_by_role("button", name="Cancel job").count() == 0
    page.screenshot(path=artifacts / "viewer-job.png", full_page=True)
    open_gate(gate)
    open_gate(gate)
    ledger.wait_for_status(running.id, "succeeded")


def test_an_operator_sees_a_running_jobs_bar_move_without_a_reload(
    browser: Any, server: ApiServer, worker: WorkerProcess, artifacts: Path, gate: str
) -> None:
    job = running_gated(gate, 4)
    page = logged_in(browser, server, OPERATOR_KEY)
    row = page.locator(f'tr[data-job="{job.id}"]')
    assert row.get_by_role("button", name=re.compile("^Cancel")).is_visible()
    assert row.get_by_role("button", name=re.compile("^Retry")).count() == 0  # not while live
    row_bar = row.locator("[role=progressbar]")
    assert row_bar.get_attribute("aria-valuenow") == "0"
    page.evaluate("window.__notReloaded = true")

    open_gate(gate)  # step 1 of 4 done: 25 %

    expect(row_bar).to_have_attribute("aria-valuenow", "25", timeout=WAIT_MS)
    assert page.evaluate("window.__notReloaded") is True  # updated in place
    fail.apply_async(kwargs={"message": "arrived later"}, tenant="acme")
    page.get_by_text("1 new job since this page loaded").wait_for()  # counted, not slipped in
    page.screenshot(path=artifacts / "operator-list-bar-moved.png", full_page=True)

    page.goto(f"{server.url}/dashboard/jobs/{job.id}")
    page.evaluate("window.__notReloaded = true")
    open_gate(gate)  # 50 %, and a new log line tailed from the cursor
    expect(page.locator("[data-job-bar] [role=progressbar]")).to_have_attribute(
        "aria-valuenow", "50", timeout=WAIT_MS
    )
    page.get_by_text("step 2 done").wait_for()
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("#log-lines tr").count() == 2  # each line once: only new ones fetched
    page.screenshot(path=artifacts / "operator-job-bar-moved.png", full_page=True)
    open_gate(gate)
    open_gate(gate)
    ledger.wait_for_status(job.id, "succeeded")
    page.locator("[data-job-status]", has_text="succeeded").wait_for()


def test_an_operator_cancels_a_job_from_its_page(
    browser: Any, server: ApiServer, worker: WorkerProcess, artifacts: Path, gate: str
) -> None:
    job = running_gated(gate, 3)
    page = logged_in(browser, server, OPERATOR_KEY)
    page.goto(f"{server.url}/dashboard/jobs/{job.id}")

    page.get_by_label("reason").fill("not needed any more")
    page.get_by_role("button", name="Cancel job").click()

    page.get_by_role("status").filter(has_text="Cancel requested").wait_for()
    row = ledger.wait_for_status(job.id, "canceled")
    assert row["failure_reason"] == "not needed any more"
    page.locator("[data-job-status]", has_text="canceled").wait_for()  # live, no reload
    assert page.get_by_role("button", name="Cancel job").is_hidden()
    assert ("running", "canceled") in ledger.transitions(job.id)
    page.screenshot(path=artifacts / "operator-canceled.png", full_page=True)


def test_an_operator_runs_a_bulk_retry_over_a_filter_after_its_dry_run_count(
    browser: Any, server: ApiServer, worker: WorkerProcess, artifacts: Path
) -> None:
    subject = f"bulk-{uuid.uuid4().hex[:6]}"
    failed = [
        fail.apply_async(kwargs={"message": f"boom {n}"}, tenant="acme", subject=subject)
        for n in range(3)
    ]
    theirs = fail.apply_async(kwargs={"message": "not yours"}, tenant="other", subject=subject)
    for job in [*failed, theirs]:
        ledger.wait_for_status(job.id, "failed")
    page = logged_in(browser, server, OPERATOR_KEY)
    page.goto(f"{server.url}/dashboard?q={subject}&status=failed")
    assert page.locator("tr[data-job]").count() == 3

    page.locator("#bulk summary").click()
    page.get_by_label("action").select_option("retry")
    page.get_by_label("operation name").fill(f"retry-{subject}")
    page.get_by_role("button", name="Preview (dry run)").click()

    page.get_by_text("3 jobs match").wait_for()  # the dry run: nothing changed yet
    assert all(ledger.job(job.id)["status"] == "failed" for job in failed)  # type: ignore[index]
    page.screenshot(path=artifacts / "operator-bulk-preview.png", full_page=True)
    page.get_by_role("button", name=re.compile("^Confirm")).click()

    page.locator("[data-op-status]", has_text="done").wait_for()
    assert page.locator("[data-op-done]").inner_text() == "3"
    for job in failed:
        assert ledger.wait_for_status(job.id, "failed")["attempts"] == 2  # ran again
    assert ledger.job(theirs.id)["attempts"] == 1  # type: ignore[index]
    page.screenshot(path=artifacts / "operator-bulk-done.png", full_page=True)


def test_an_operator_searches_by_run_name_at_phone_width(
    browser: Any, server: ApiServer, worker: WorkerProcess, artifacts: Path
) -> None:
    jobs = [fail.apply_async(kwargs={"message": f"m{n}"}, tenant="acme") for n in range(3)]
    wanted = ledger.wait_for_status(jobs[1].id, "failed")
    page = logged_in(browser, server, OPERATOR_KEY, width=390)

    page.get_by_role("searchbox").fill(wanted["name"])
    page.get_by_role("button", name="Search").click()

    page.wait_for_url(re.compile(r"[?&]q="))
    assert page.locator("tr[data-job]").count() == 1
    assert page.locator(f'tr[data-job="{jobs[1].id}"]').count() == 1
    # usable at 390 px: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=artifacts / "operator-search-390px.png", full_page=True)
    page.get_by_role("link", name=wanted["name"]).click()  # its page, at phone width too
    page.get_by_role("button", name="Retry job").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=artifacts / "operator-job-390px.png", full_page=True)
