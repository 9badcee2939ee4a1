"""Bulk operations on a real API server and a real worker: dry run, run, idempotency,
the size limit and batches, tenants, and jobs that race the operation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from app.config import settings
from app.ledger.operations import actions, bulk
from app.ledger.reads.job_search import JobFilter
from tests.support import ledger
from tests.support.api import ACME, OPERATOR, OTHER, VIEWER, unused_queue
from tests.support.api_server import ApiServer, start_api_server
from tests.support.jobs import echo, fail, gate_key, gated
from tests.support.ops import wait_at
from tests.support.processes import WorkerProcess
from tests.support.races import holding, wait_for_a_waiter

#: The server's limit and batch size: small, so a test crosses both with a few jobs.
MAX_JOBS = 4
BATCH = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    started = start_api_server(
        tmp_path_factory.mktemp("bulk-api"),
        JOBLEDGER_BULK_MAX_JOBS=str(MAX_JOBS),
        JOBLEDGER_BULK_BATCH_SIZE=str(BATCH),
    )
    yield started
    started.stop()


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def failed_jobs(count: int, tenant: str = "acme", message: str = "boom") -> list[str]:
    """``count`` jobs failed by the real worker."""
    ids = [
        str(fail.apply_async(kwargs={"message": message}, tenant=tenant).id) for _ in range(count)
    ]
    for job_id in ids:
        ledger.wait_for_status(job_id, "failed")
    return ids


def follow(http: httpx.Client, operation_id: int, timeout: float = 60) -> dict[str, Any]:
    """Poll the operation (as a client follows one) until it is done or failed."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = http.get(f"/operations/{operation_id}", headers=OPERATOR).json()
        if body["status"] != "running":
            return body
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"operation {operation_id} still running: {body}")


def operate(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/operations", json=body, headers=OPERATOR)


def test_dry_run_then_retry_every_match_linked_and_another_tenants_jobs_untouched(
    http: httpx.Client, worker: WorkerProcess
) -> None:
    mine = failed_jobs(3, message="bulk-retry-me")
    theirs = failed_jobs(1, tenant="other", message="bulk-retry-me")
    their_events = ledger.events(theirs[0])
    wanted = {"q": "bulk-retry-me", "status": ["failed"]}

    dry = operate(http, action="retry", name="retry-1", filter=wanted, dry_run=True)
    assert dry.status_code == 200
    assert dry.json()["matched"] == 3
    assert dry.json()["max_jobs"] == MAX_JOBS
    assert ledger.count("SELECT count(*) FROM job_operations") == 0  # nothing recorded

    started = operate(http, action="retry", name="retry-1", filter=wanted)
    assert started.status_code == 202
    assert started.json()["matched"] == 3
    finished = follow(http, started.json()["id"])

    assert (finished["status"], finished["done"], finished["skipped"]) == ("done", 3, 0)
    assert finished["created_by"] == "on-call"
    assert finished["filter"] == wanted
    for job_id in mine:
        # the worker runs each again (it fails again): the retry event stays linked
        ledger.wait_for_status(job_id, "failed")
        row = ledger.job(job_id)
        assert row is not None
        assert row["operation_id"] == finished["id"]
        assert row["attempts"] == 2
        linked = [e for e in ledger.events(job_id) if e["operation_id"] == finished["id"]]
        assert [
            (e["from_status"], e["to_status"], e["actor"], e["actor_name"]) for e in linked
        ] == [("failed", "queued", "api", "on-call")]
        assert ledger.has_valid_history(job_id)
    assert ledger.events(theirs[0]) == their_events
    assert ledger.job(theirs[0])["operation_id"] is None  # type: ignore[index]
    # the other tenant sees neither the operation nor a count of acme's jobs
    assert http.get(f"/operations/{finished['id']}", headers=OTHER).status_code == 404
    assert http.get("/operations", headers=OTHER).json()["total"] == 0


def test_the_same_operation_again_acts_on_nothing_twice(
    http: httpx.Client, worker: WorkerProcess
) -> None:
    queue = unused_queue()
    ids = [
        str(echo.apply_async(kwargs={"value": n}, queue=queue, tenant="acme").id) for n in range(3)
    ]
    wanted = {"queue": [queue]}
    first = operate(http, action="cancel", name="stop-them", filter=wanted)
    assert first.status_code == 202
    done = follow(http, first.json()["id"])
    assert done["done"] == 3
    events = {job_id: ledger.events(job_id) for job_id in ids}
    for job_id in ids:
        assert ledger.transitions(job_id) == [(None, "queued"), ("queued", "canceled")]

    again = operate(http, action="cancel", name="stop-them", filter=wanted)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == done["id"]
    assert again.json()["done"] == 3
    assert {job_id: ledger.events(job_id) for job_id in ids} == events
    assert ledger.count("SELECT count(*) FROM job_operations") == 1

    other_filter = operate(http, action="cancel", name="stop-them", filter={"queue": ["x"]})
    assert other_filter.status_code == 409
    assert other_filter.json()["detail"][0]["field"] == "name"


def test_over_the_limit_is_refused_and_within_it_runs_in_batches(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = unused_queue()
    ids = [
        str(echo.apply_async(kwargs={"value": n}, queue=queue, tenant="acme").id)
        for n in range(MAX_JOBS + 1)
    ]

    refused = operate(http, action="cancel", name="too-many", filter={"queue": [queue]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "filter"
    assert f"{MAX_JOBS + 1} jobs match" in refused.json()["detail"][0]["message"]
    assert "JOBLEDGER_BULK_MAX_JOBS" in refused.json()["detail"][0]["message"]
    assert ledger.count("SELECT count(*) FROM job_operations") == 0
    assert all(ledger.job(job_id)["status"] == "queued" for job_id in ids)  # type: ignore[index]

    # the same limits in this process: progress is written after each batch
    monkeypatch.setenv("JOBLEDGER_BULK_MAX_JOBS", str(MAX_JOBS))
    monkeypatch.setenv("JOBLEDGER_BULK_BATCH_SIZE", str(BATCH))
    settings.cache_clear()
    seen: list[tuple[int, int]] = []
    actions.cancel(ids[-1], actor="api")  # four left: within the limit
    operation = bulk.run(
        "cancel",
        JobFilter(tenant="acme", queues=(queue,)),
        "in-batches",
        "on-call",
        on_progress=lambda op: seen.append((op.done, op.matched)),
    )
    settings.cache_clear()
    assert seen == [(2, 4), (4, 4)]
    assert (operation.status, operation.done, operation.skipped) == ("done", 4, 0)


def test_a_job_that_finishes_while_the_operation_runs_is_skipped_not_forced(
    worker: WorkerProcess, redis_client: redis.Redis, gate: str
) -> None:
    queue = unused_queue()
    first = str(echo.apply_async(kwargs={"value": 0}, queue=queue, tenant="acme").id)
    running = str(gated.apply_async(kwargs={"gate": gate, "steps": 1}, tenant="acme").id)
    wait_at(redis_client, gate)
    last = str(echo.apply_async(kwargs={"value": 1}, queue=queue, tenant="acme").id)
    waiting = [first, last]
    wanted = JobFilter(tenant="acme", statuses=("queued", "running"))
    assert bulk.preview("cancel", wanted) == 3
    outcome: list[bulk.Operation | BaseException] = []

    def operate() -> None:
        try:
            outcome.append(bulk.run("cancel", wanted, "race", "on-call", via="cli"))
        except BaseException as error:  # reported by the assertion below
            outcome.append(error)

    # the run selects all three, then waits at the first's row; meanwhile the running
    # one finishes, just before its turn
    with holding(first):
        operation_thread = threading.Thread(target=operate)
        operation_thread.start()
        wait_for_a_waiter()
        redis_client.rpush(gate_key(gate), 1)
        ledger.wait_for_status(running, "succeeded")
    operation_thread.join(60)
    [operation] = outcome
    assert isinstance(operation, bulk.Operation), operation

    assert (operation.matched, operation.done, operation.skipped) == (3, 2, 1)
    assert ledger.transitions(running) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert ledger.job(running)["operation_id"] is None  # type: ignore[index]
    for job_id in waiting:
        assert ledger.job(job_id)["status"] == "canceled"  # type: ignore[index]
        assert ledger.events(job_id)[-1]["operation_id"] == operation.id
        assert ledger.events(job_id)[-1]["actor"] == "cli"
    assert all(ledger.has_valid_history(job_id) for job_id in [running, *waiting])


def test_a_viewer_may_not_run_or_dry_run_an_operation(http: httpx.Client) -> None:
    for dry_run in (True, False):
        refused = http.post(
            "/operations",
            json={"action": "cancel", "name": "x", "filter": {}, "dry_run": dry_run},
            headers=VIEWER,
        )
        assert refused.status_code == 403
    assert http.get("/operations", headers=VIEWER).status_code == 200
    assert http.get("/operations", headers=ACME).status_code == 200


def test_a_bad_filter_is_422_naming_the_field(http: httpx.Client) -> None:
    unknown = operate(http, action="cancel", name="x", filter={"status": ["exploded"]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "filter.status"
    extra = operate(http, action="cancel", name="x", filter={"colour": "red"})
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["field"] == "filter.colour"
    action = operate(http, action="delete", name="x")
    assert action.status_code == 422
    assert action.json()["detail"][0]["field"] == "action"
    assert ledger.count("SELECT count(*) FROM job_operations") == 0
