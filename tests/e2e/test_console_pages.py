"""The console's pages with a real worker: item errors as a paged table and a partial
job's summary, workers and queues joined with the ledger, a view's filters in its URL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.api.web import fleet
from app.celery import app as celery_app
from tasks import import_data
from tests.e2e.test_dashboard import log_in
from tests.e2e.test_file_download import exported, file_row
from tests.support import api, domain, ledger
from tests.support.api import ACME, OTHER
from tests.support.jobs import gate_key, gated
from tests.support.processes import WorkerProcess


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def test_item_errors_are_a_paged_table_and_a_partial_job_says_how_it_ended(
    client: TestClient, worker: WorkerProcess, tmp_path: Path
) -> None:
    rows = [[str(n), "twelve" if n % 2 else f"{n}.5"] for n in range(120)]  # 60 bad amounts
    source = domain.write_csv(tmp_path / "half.csv", ["id", "amount"], rows)
    job_id = import_data.apply_async(
        kwargs={
            "source": str(source),
            "dataset": domain.unique("half"),
            "columns": {"id": "int", "amount": "decimal"},
            "tenant": "acme",
        },
        tenant="acme",
    ).id
    job = ledger.wait_for_status(job_id, "partial", "failed", "succeeded", timeout=60)
    assert job["status"] == "partial"

    first = client.get(f"/dashboard/jobs/{job_id}", headers=ACME).text
    second = client.get(f"/dashboard/jobs/{job_id}?errors_page=2", headers=ACME).text

    assert "finished with 60 item errors" in first  # not the last "step" message
    assert 'id="item-errors"' in first
    assert "page 1 of 2" in first
    body = first.split('id="item-errors"')[1].split("</table>")[0]
    assert body.count("<tr><td") == 50
    assert '<td class="num">3</td><td class="mono">amount</td>' in body  # row, field
    assert second.split('id="item-errors"')[1].split("</table>")[0].count("<tr><td") == 10
    assert "page 2 of 2" in second
    assert "<h2>Errors</h2>" not in first  # no raw JSON block any more


def test_the_workers_page_shows_a_running_job_of_the_tenant_and_queue_lengths(
    client: TestClient, worker: WorkerProcess, gate: str, redis_client: redis.Redis
) -> None:
    ours = gated.apply_async(kwargs={"gate": gate, "steps": 1}, tenant="acme")
    theirs = gated.apply_async(kwargs={"gate": gate + "b", "steps": 1}, tenant="other")
    for job in (ours, theirs):
        ledger.wait_for_status(job.id, "running")
    waiting = api.unused_queue()
    for _ in range(3):
        gated.apply_async(kwargs={"gate": gate, "steps": 1}, tenant="acme", queue=waiting)

    page = client.get("/dashboard/workers", headers=ACME).text
    as_them = client.get("/dashboard/workers", headers=OTHER).text

    assert worker.name in page
    assert str(ours.id) in page
    assert str(theirs.id) not in page  # another tenant's job is not shown
    assert str(theirs.id) in as_them
    assert str(ours.id) not in as_them
    # a worker's count of tasks done counts every tenant's: not shown to one tenant
    assert "tasks done" not in page
    assert f'<tr data-queue="{celery_app.conf.task_default_queue}">' in page
    lengths = fleet.queue_lengths([waiting, "jobledger-test:never-used"])
    assert [(q.name, q.messages) for q in lengths] == [
        (waiting, 3),
        ("jobledger-test:never-used", 0),
    ]
    for key in (gate_key(gate), gate_key(gate + "b")):
        redis_client.rpush(key, 1)
    for job in (ours, theirs):
        ledger.wait_for_status(job.id, "succeeded")


def test_a_jobs_file_downloads_from_its_page_with_the_session(client: TestClient) -> None:
    job = exported()
    recorded = file_row(job["id"])
    log_in(client)
    link = f"/dashboard/jobs/{job['id']}/files/{recorded['id']}"

    page = client.get(f"/dashboard/jobs/{job['id']}").text
    answer = client.get(link)

    assert f'href="{link}" download' in page
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == recorded["sha256"]
    assert client.get(link, headers=OTHER).status_code == 404  # another tenant's key
