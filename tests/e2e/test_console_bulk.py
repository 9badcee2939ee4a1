"""Bulk operations and charts from the console: a dry run first, then the operation; only
an operator's session with its CSRF token acts; the same name never acts twice; another
tenant's jobs are never touched; the charts show the ledger's numbers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.api.auth import ApiKey, KeyRing, digest_of
from app.api.main import create_app
from tests.e2e.test_dashboard import csrf_of
from tests.support import ledger
from tests.support.api import ACME_KEY, OTHER_KEY
from tests.support.jobs import fail
from tests.support.processes import WorkerProcess

VIEWER_KEY = "viewer-key-of-acme"


@pytest.fixture
def client() -> Iterator[TestClient]:
    keys = KeyRing(
        {
            digest_of(ACME_KEY): ApiKey(name="bob", tenant="acme", role="operator"),
            digest_of(VIEWER_KEY): ApiKey(name="ada", tenant="acme", role="viewer"),
            digest_of(OTHER_KEY): ApiKey(name="eve", tenant="other", role="operator"),
        }
    )
    with TestClient(create_app(keys)) as test_client:
        yield test_client


def session(client: TestClient, key: str) -> str:
    """Log in with ``key``; the session's CSRF token."""
    client.cookies.clear()
    client.post("/dashboard/login", data={"key": key})
    return csrf_of(client.get("/dashboard").text)


def failed_jobs(subject: str, tenant: str, count: int) -> list[str]:
    jobs = [
        str(fail.apply_async(kwargs={"message": "boom"}, tenant=tenant, subject=subject).id)
        for _ in range(count)
    ]
    for job in jobs:
        ledger.wait_for_status(job, "failed")
    return jobs


def test_a_bulk_retry_is_counted_first_then_run_once_and_only_in_the_tenant(
    client: TestClient, worker: WorkerProcess
) -> None:
    ours = failed_jobs("nightly", "acme", 3)
    theirs = failed_jobs("nightly", "other", 2)
    token = session(client, ACME_KEY)
    form = {"csrf": token, "q": "nightly", "status": "failed", "action": "retry", "name": "r1"}

    preview = client.post("/dashboard/operations", data=form)

    assert preview.status_code == 200
    assert "3 jobs match" in preview.text
    assert all(ledger.job(job)["attempts"] == 1 for job in ours)  # type: ignore[index]
    done = client.post(
        "/dashboard/operations", data={**form, "confirm": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303
    page = done.headers["location"]
    operation_id = int(page.rsplit("/", 1)[1])
    for job in ours:
        assert ledger.wait_for_status(job, "failed")["attempts"] == 2
    again = client.post(
        "/dashboard/operations", data={**form, "confirm": "yes"}, follow_redirects=False
    )
    assert again.headers["location"] == page  # the same operation: nothing doubled
    live = client.get(f"{page}/live").json()
    assert (live["done"], live["matched"], live["status"]) == (3, 3, "done")
    for job in ours:
        assert ledger.wait_for_status(job, "failed")["attempts"] == 2
        retried = [e for e in ledger.events(job) if e["to_status"] == "queued"][-1]
        assert retried["operation_id"] == operation_id
    assert all(ledger.job(job)["attempts"] == 1 for job in theirs)  # type: ignore[index]
    assert "bob" in client.get(page).text  # who ran it
    session(client, OTHER_KEY)
    assert client.get(page).status_code == 404  # another tenant's operation


def test_a_viewer_or_a_form_without_the_token_cannot_run_a_bulk_operation(
    client: TestClient, worker: WorkerProcess
) -> None:
    jobs = failed_jobs("viewer-case", "acme", 1)
    form = {"q": "viewer-case", "action": "retry", "name": "v1", "confirm": "yes"}
    token = session(client, VIEWER_KEY)

    as_viewer = client.post("/dashboard/operations", data={**form, "csrf": token})
    single = client.post(f"/dashboard/jobs/{jobs[0]}/retry", data={"csrf": token})
    list_page = client.get("/dashboard").text
    session(client, ACME_KEY)
    without_token = client.post("/dashboard/operations", data=form)

    assert as_viewer.status_code == 403
    assert "has role &#39;viewer&#39;" in as_viewer.text  # escaped quotes
    assert single.status_code == 403
    assert 'id="bulk"' not in list_page
    assert "Retry" not in list_page
    assert without_token.status_code == 403
    assert client.get("/dashboard/operations").text.count("v1") == 0
    assert ledger.job(jobs[0])["attempts"] == 1  # type: ignore[index]


def test_a_bulk_action_needs_a_filter(client: TestClient) -> None:
    token = session(client, ACME_KEY)

    answer = client.post(
        "/dashboard/operations", data={"csrf": token, "action": "cancel", "name": "all"}
    )

    assert answer.status_code == 422
    assert "filtered view only" in answer.text


def test_the_charts_show_the_tenants_finished_jobs(
    client: TestClient, worker: WorkerProcess
) -> None:
    failed_jobs("charted", "acme", 2)
    failed_jobs("charted", "other", 3)
    session(client, ACME_KEY)

    page = client.get("/dashboard/charts?window=hour")

    assert page.status_code == 200
    assert "2 jobs finished in 60 minutes" in page.text  # acme's, not other's 3
    assert '<span><i class="c-failed"></i>failed 2</span>' in page.text
    assert '<td>example.fail</td><td class="num">2</td>' in page.text
    assert "100.0 %" in page.text  # failure rate of example.fail
    assert client.get("/dashboard/charts?window=year").status_code == 422
