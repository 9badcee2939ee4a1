"""The dashboard pages: log in with a key, jobs by status, a job's steps, events and logs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.api.auth import ApiKey, KeyRing, digest_of
from app.api.main import create_app
from app.api.sessions import COOKIE
from app.config import settings
from app.db import engine
from app.ledger.operations import actions as operations
from models.tables import dashboard_sessions
from tests.support import api, ledger
from tests.support.api import ACME, ACME_KEY, OTHER, OTHER_KEY
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


def log_in(client: TestClient) -> str:
    """Log in with the acme key; the session cookie's value."""
    response = client.post("/dashboard/login", data={"key": ACME_KEY}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(client.cookies[COOKIE])


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "no logout form with a CSRF token"
    return found.group(1)


def test_logging_in_opens_a_session_in_an_http_only_lax_cookie(client: TestClient) -> None:
    refused = client.post("/dashboard/login", data={"key": "wrong"}, follow_redirects=False)
    accepted = client.post("/dashboard/login", data={"key": ACME_KEY}, follow_redirects=False)

    assert refused.status_code == 401
    assert "not valid" in refused.text
    assert accepted.status_code == 303
    cookie = accepted.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/dashboard" in cookie
    assert ACME_KEY not in cookie  # the cookie is a session token, never the key
    assert digest_of(ACME_KEY) not in cookie
    page = client.get("/dashboard")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200
    assert "tenant <b>acme</b>" in page.text
    # the cookie opens the read-only pages only, never the JSON API (no CSRF there)
    assert client.get("/jobs").status_code == 401


def test_the_ledger_keeps_only_a_digest_of_the_session_token(client: TestClient) -> None:
    token = log_in(client)

    with engine().connect() as connection:
        rows = connection.execute(select(dashboard_sessions)).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_digest"] == hashlib.sha256(token.encode()).hexdigest()
    assert rows[0]["key_digest"] == digest_of(ACME_KEY)
    assert (rows[0]["key_name"], rows[0]["tenant"]) == ("ci-bot", "acme")
    assert rows[0]["expires_at"] > rows[0]["created_at"]
    assert token not in str(dict(rows[0]))


def test_after_logout_a_copy_of_the_cookie_opens_nothing(client: TestClient) -> None:
    token = log_in(client)
    stolen = TestClient(client.app, cookies={COOKIE: token})
    assert stolen.get("/dashboard", follow_redirects=False).status_code == 200

    logged_out = client.post(
        "/dashboard/logout",
        data={"csrf": csrf_of(client.get("/dashboard").text)},
        follow_redirects=False,
    )

    assert logged_out.status_code == 303
    assert logged_out.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    again = stolen.get("/dashboard", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/dashboard/login"


def test_logout_needs_the_sessions_csrf_token_and_a_get_does_nothing(client: TestClient) -> None:
    log_in(client)

    assert client.get("/dashboard/logout", follow_redirects=False).status_code == 405
    forged = client.post("/dashboard/logout", data={"csrf": "0" * 64}, follow_redirects=False)
    missing = client.post("/dashboard/logout", follow_redirects=False)

    assert forged.status_code == missing.status_code == 403
    assert client.get("/dashboard", follow_redirects=False).status_code == 200  # still in


def test_a_key_removed_from_the_configuration_ends_its_sessions() -> None:
    with TestClient(create_app(api.keyring())) as before:
        token = log_in(before)
    without_acme = KeyRing({digest_of(OTHER_KEY): ApiKey(name="intruder", tenant="other")})

    with TestClient(create_app(without_acme), cookies={COOKIE: token}) as after:
        response = after.get("/dashboard", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/login"


def test_an_expired_session_opens_nothing(client: TestClient) -> None:
    token = log_in(client)
    with engine().begin() as connection:
        connection.execute(text("UPDATE dashboard_sessions SET expires_at = now()"))

    stale = TestClient(client.app, cookies={COOKIE: token})
    assert stale.get("/dashboard", follow_redirects=False).status_code == 303


def test_rapid_logins_from_one_client_are_429_after_the_limit(client: TestClient) -> None:
    limit = settings().dashboard_logins_per_minute
    answers = [
        client.post("/dashboard/login", data={"key": "guess"}, follow_redirects=False).status_code
        for _ in range(limit)
    ]
    refused = client.post("/dashboard/login", data={"key": ACME_KEY}, follow_redirects=False)

    assert answers == [401] * limit
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert COOKIE not in refused.headers.get("set-cookie", "")


def test_a_login_form_larger_than_4_kib_is_413(client: TestClient) -> None:
    response = client.post("/dashboard/login", data={"key": "x" * 5000}, follow_redirects=False)

    assert response.status_code == 413


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
    assert 'queued<b data-count-for="queued">1</b>' in page
    assert 'canceled<b data-count-for="canceled">1</b>' in page
    assert str(waiting.id) in page
    policy = everything.headers["content-security-policy"]
    assert "script-src 'self';" in policy  # the console's own file, nothing inline
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert "default-src 'none'" in policy
    assert '<meta http-equiv="refresh"' not in page  # live without reloading
    assert f'<tr data-job="{waiting.id}">' in page  # the row the page's script updates
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
    assert page.count(". example.echo</b>") == 2  # its two steps, as a timeline
    assert "echo 20" in page
    assert "echo 21" in page
    assert 'class="badge s-succeeded"' in page
    assert "api" in page  # trigger and actors
    assert 'data-live="false"' in page  # finished: nothing to follow


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
