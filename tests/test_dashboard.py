"""The dashboard pages: log in with a key, jobs by status, a job's steps, events and logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.ledger import operations
from tests.support import api, ledger
from tests.support.api import ACME, ACME_KEY, OTHER
from tests.support.jobs import echo
from tests.support.processes import WorkerProcess

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def test_without_a_key_the_dashboard_sends_the_browser_to_log_in(client: TestClient) -> None:
    response = client.get("/dashboard", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    assert 'name="key"' in form.text


def test_logging_in_keeps_the_key_in_a_strict_http_only_cookie(client: TestClient) -> None:
    refused = client.post("/dashboard/login", data={"key": "wrong"}, follow_redirects=False)
    accepted = client.post("/dashboard/login", data={"key": ACME_KEY}, follow_redirects=False)

    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert accepted.status_code == 303
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie
    page = client.get("/dashboard")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200
    assert "tenant <b>acme</b>" in page.text
    # the cookie opens the read-only pages only, never the JSON API (no CSRF there)
    assert client.get("/jobs").status_code == 401
    client.post("/dashboard/logout")
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_cross_site_login_is_refused(client: TestClient) -> None:
    response = client.post(
        "/dashboard/login",
        data={"key": ACME_KEY},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )

    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_jobs_by_status_with_progress_bars_filters_and_escaping(client: TestClient) -> None:
    queue = api.unused_queue()
    waiting = echo.apply_async(kwargs={"value": 1}, queue=queue, tenant="acme", subject=SCRIPT)
    canceled = echo.apply_async(kwargs={"value": 2}, queue=queue, tenant="acme")
    operations.cancel(canceled.id, actor="cli")
    echo.apply_async(kwargs={"value": 3}, queue=queue, tenant="other", subject="other-secret")

    everything = client.get("/dashboard", headers=ACME)
    only_canceled = client.get("/dashboard?status=Cancelled", headers=ACME)

    assert everything.status_code == 200
    page = everything.text
    assert ESCAPED in page
    assert SCRIPT not in page
    assert "other-secret" not in page
    assert 'aria-valuenow="0"' in page  # a progress bar per job
    assert "queued<b>1</b>" in page
    assert "canceled<b>1</b>" in page
    assert str(waiting.id) in page
    assert "script-src" not in everything.headers["content-security-policy"]
    assert "default-src 'none'" in everything.headers["content-security-policy"]
    assert '<meta http-equiv="refresh"' in page  # live jobs: the page reloads itself
    assert str(canceled.id) in only_canceled.text
    assert str(waiting.id) not in only_canceled.text
    assert "2 jobs" in page  # the tenant's, not the other tenant's third
    assert "1 job<" in only_canceled.text
    assert str(waiting.id) not in client.get("/dashboard?type=example.fail", headers=ACME).text


def test_a_job_page_shows_its_steps_events_and_log_lines(
    client: TestClient, worker: WorkerProcess
) -> None:
    created = client.post(
        "/jobs", json={"type": "example.pair", "payload": {"value": 20}}, headers=ACME
    ).json()
    ledger.wait_for_status(created["id"], "succeeded")

    response = client.get(f"/dashboard/jobs/{created['name']}", headers=ACME)

    assert response.status_code == 200
    page = response.text
    assert created["name"] in page
    assert page.count("<td>example.echo</td>") == 2  # its two steps
    assert "echo 20" in page
    assert "echo 21" in page
    assert 'class="badge s-succeeded"' in page
    assert "api" in page  # trigger and actors
    assert '<meta http-equiv="refresh"' not in page  # finished: nothing to follow


def test_a_failure_reason_from_a_job_is_shown_escaped(
    client: TestClient, worker: WorkerProcess
) -> None:
    created = client.post(
        "/jobs", json={"type": "example.fail", "payload": {"message": SCRIPT}}, headers=ACME
    ).json()
    ledger.wait_for_status(created["id"], "failed")

    page = client.get(f"/dashboard/jobs/{created['id']}", headers=ACME).text

    assert f"RuntimeError: {ESCAPED}" in page
    assert SCRIPT not in page


def test_another_tenants_job_page_is_not_found(client: TestClient) -> None:
    job = echo.apply_async(kwargs={"value": 4}, queue=api.unused_queue(), tenant="acme")

    assert client.get(f"/dashboard/jobs/{job.id}", headers=OTHER).status_code == 404
    assert client.get("/dashboard/jobs/not-a-job", headers=ACME).status_code == 400
