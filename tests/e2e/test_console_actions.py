"""The console's actions and live documents: CSRF on every POST, tenants kept apart, log
lines tailed from a cursor, the console's own files served."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.db import engine
from tests.e2e.test_dashboard import csrf_of, log_in
from tests.support import api, ledger
from tests.support.api import ACME, OTHER
from tests.support.jobs import echo, noisy
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def waiting_job(tenant: str = "acme") -> str:
    """A queued job no worker will take (its queue has no consumer)."""
    return str(echo.apply_async(kwargs={"value": 1}, queue=api.unused_queue(), tenant=tenant).id)


def act(client: TestClient, job: str, action: str, **form: str) -> Any:
    """POST a job's action form as its page does (the redirect is not followed)."""
    return client.post(f"/dashboard/jobs/{job}/{action}", data=form, follow_redirects=False)


@contextmanager
def statements_run() -> Iterator[list[str]]:
    """The SQL statements this process sends to the ledger while the block runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(statement)

    event.listen(engine(), "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine(), "before_cursor_execute", record)


def test_a_cancel_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    client: TestClient,
) -> None:
    job = waiting_job()
    log_in(client)
    token = csrf_of(client.get(f"/dashboard/jobs/{job}").text)

    missing = act(client, job, "cancel")
    wrong = act(client, job, "cancel", csrf="0" * 64)

    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert "CSRF" in missing.text
    assert ledger.transitions(job) == [(None, "queued")]  # nothing happened
    accepted = act(client, job, "cancel", csrf=token, reason="by hand")
    assert accepted.status_code == 303
    assert accepted.headers["location"] == f"/dashboard/jobs/{job}?done=canceled"
    row = ledger.job(job)
    assert row is not None
    assert row["status"] == "canceled"
    assert row["failure_reason"] == "by hand"
    canceled = ledger.events(job)[-1]
    assert (canceled["actor"], canceled["actor_name"]) == ("api", "ci-bot")  # the key's name
    assert client.get(accepted.headers["location"]).text.count("Canceled: the job will not run.")


def test_a_retry_goes_back_to_the_list_it_came_from_but_never_to_another_site(
    client: TestClient,
) -> None:
    job = waiting_job()
    log_in(client)
    token = csrf_of(client.get("/dashboard").text)
    act(client, job, "cancel", csrf=token)

    elsewhere = act(client, job, "retry", csrf=token, back="//evil.example/dashboard")
    act(client, job, "cancel", csrf=token)
    listed = act(client, job, "retry", csrf=token, back="/dashboard?status=queued")
    again = act(client, job, "retry", csrf=token, back="/dashboard?status=queued")

    assert elsewhere.status_code == 303
    assert elsewhere.headers["location"] == f"/dashboard/jobs/{job}?done=retried"
    assert listed.status_code == 303
    assert listed.headers["location"] == "/dashboard?status=queued&done=retried"
    assert again.status_code == 409  # queued now: nothing to retry
    assert ledger.transitions(job)[-2:] == [("queued", "canceled"), ("canceled", "queued")]


def test_another_tenants_job_cannot_be_canceled_from_the_console(client: TestClient) -> None:
    theirs = waiting_job(tenant="other")
    log_in(client)
    token = csrf_of(client.get("/dashboard").text)

    answer = act(client, theirs, "cancel", csrf=token)

    assert answer.status_code == 404
    assert ledger.transitions(theirs) == [(None, "queued")]


def test_a_script_acts_with_its_key_in_a_header_and_needs_no_csrf_token(
    client: TestClient,
) -> None:
    job = waiting_job()

    answer = client.post(f"/dashboard/jobs/{job}/cancel", headers=ACME, follow_redirects=False)

    assert answer.status_code == 303
    assert ledger.wait_for_status(job, "canceled")


def test_the_live_document_shows_the_tenants_jobs_only(client: TestClient) -> None:
    ours, theirs = waiting_job(), waiting_job(tenant="other")

    answer = client.get(f"/dashboard/live?id={ours}&id={theirs}", headers=ACME)
    as_them = client.get(f"/dashboard/live?id={ours}", headers=OTHER)

    assert answer.status_code == 200
    body = answer.json()
    assert [job["id"] for job in body["jobs"]] == [ours]
    assert body["counts"]["queued"] == 1  # acme's count, not both tenants'
    assert body["jobs"][0]["live"] is True
    assert as_them.json()["jobs"] == []
    assert client.get("/dashboard/live").status_code == 401  # no key, no session


def test_a_live_poll_reads_only_what_the_page_shows(client: TestClient) -> None:
    """Every open tab asks every two seconds: the session, the status counts (the
    watermark and the counts, one snapshot) and the listed jobs, nothing more (the oldest
    live job's age, which ``/stats`` reads, is not shown by the console)."""
    job = waiting_job()
    log_in(client)
    with statements_run() as statements:
        answer = client.get(f"/dashboard/live?id={job}")

    assert answer.status_code == 200
    assert answer.json()["counts"]["queued"] == 1
    assert not [s for s in statements if "min(" in s.lower()], statements
    assert len(statements) == 4, statements


def test_a_job_poll_reads_the_job_its_steps_and_new_log_lines_only(
    client: TestClient, worker: WorkerProcess
) -> None:
    """A job's open page asks every two seconds: the session, the job's live fields, its
    steps, its log lines after the cursor, nothing more (not its events, files or a
    second copy of its steps)."""
    job = str(noisy.apply_async(kwargs={"size": 12}, tenant="acme").id)
    ledger.wait_for_status(job, "succeeded")
    log_in(client)
    with statements_run() as statements:
        answer = client.get(f"/dashboard/jobs/{job}/live")

    assert answer.status_code == 200
    assert answer.json()["summary"] == "done"
    assert not [s for s in statements if "job_events" in s or "job_files" in s], statements
    assert len(statements) == 4, statements


def test_log_lines_are_tailed_from_a_cursor(client: TestClient, worker: WorkerProcess) -> None:
    job = str(noisy.apply_async(kwargs={"size": 12}, tenant="acme").id)
    ledger.wait_for_status(job, "succeeded")

    first = client.get(f"/dashboard/jobs/{job}/live", headers=ACME).json()
    after = client.get(f"/dashboard/jobs/{job}/live?after={first['cursor']}", headers=ACME).json()

    assert [line["message"] for line in first["logs"]] == ["x" * 12]
    assert first["cursor"] == first["logs"][-1]["id"]
    assert after["logs"] == []  # nothing new: nothing sent again
    assert after["cursor"] == first["cursor"]
    assert first["live"] is False
    assert first["summary"] == "done"
    assert client.get(f"/dashboard/jobs/{job}/live", headers=OTHER).status_code == 404


def test_the_consoles_files_are_served_by_the_app_with_an_etag(client: TestClient) -> None:
    script = client.get("/dashboard/static/console.js")
    again = client.get(
        "/dashboard/static/console.js", headers={"If-None-Match": script.headers["etag"]}
    )

    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "fetch(" in script.text
    assert again.status_code == 304
    assert client.get("/dashboard/static/console.css").status_code == 200
    assert client.get("/dashboard/static/..%2Fdashboard.py").status_code == 404
    assert client.get("/dashboard/static/nothing.js").status_code == 404
