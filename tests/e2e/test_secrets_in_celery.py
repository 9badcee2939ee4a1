"""What Celery shows of a job — its messages' reprs, the task events Flower reads, the
worker's log file — carries no raw secret, for a job whose payload, result and
exception all carry them (tests/support/secrets.py)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery.beat import ScheduleEntry, Scheduler

from app.celery import app
from app.ledger.operations import actions as operations
from app.schedule import BEAT_OPTIONS
from tests.e2e.test_flower import AUTH
from tests.e2e.test_flower import flower as flower  # the fixture
from tests.support import ledger as read
from tests.support.brokers import delete_queue, waiting_messages
from tests.support.jobs import leaky, leaky_pair, leaky_retry
from tests.support.processes import WorkerProcess, start_worker
from tests.support.secrets import TEXT, URL, leaked

PAYLOAD = {"text": TEXT, "uri": URL, "label": "budget"}


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"secrets-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)  # with the messages the test published and left there


@pytest.fixture
def events_worker(worker_logs: Path, queue: str) -> Iterator[WorkerProcess]:
    """A worker of its own queue with task events on (``-E``): its log holds only the
    jobs of this test."""
    process = start_worker(worker_logs, queue=queue, extra=("-E",))
    yield process
    process.stop()


@contextmanager
def task_events() -> Iterator[list[dict[str, Any]]]:
    """Every event on the broker while the block runs (what Flower receives)."""
    seen: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})
        thread = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True
        )
        thread.start()
        try:
            # Events are broadcast: wait until the receiver hears one of ours.
            with app.events.default_dispatcher() as dispatcher:
                wait_until(
                    lambda: any(e["type"] == "jobledger-test-ready" for e in seen),
                    before_each=lambda: dispatcher.send("jobledger-test-ready"),
                )
            yield seen
        finally:
            receiver.should_stop = True
            thread.join(10)


def wait_until(
    condition: Callable[[], bool], *, before_each: Callable[[], Any] = lambda: None
) -> None:
    deadline = time.monotonic() + 30
    while True:
        before_each()
        if condition():
            return
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)  # polling interval of the check, not a stand-in for work


def of_task(events: list[dict[str, Any]], task_id: str) -> dict[str, dict[str, Any]]:
    return {e["type"]: e for e in list(events) if e.get("uuid") == task_id}


def test_task_events_and_the_worker_log_show_redacted_payloads_results_and_errors(
    events_worker: WorkerProcess, queue: str
) -> None:
    with task_events() as events:
        failing = leaky.apply_async(kwargs={**PAYLOAD, "outcome": "fail"}, queue=queue)
        succeeding = leaky.apply_async(kwargs=PAYLOAD, queue=queue)
        chained = leaky_pair.apply_async(kwargs=PAYLOAD, queue=queue)
        retried = leaky_retry.apply_async(kwargs=PAYLOAD, queue=queue)  # Celery retries once
        # a message published without jobledger (plain Celery, raw reprs)
        foreign = app.send_task("example.leaky", kwargs=PAYLOAD, queue=queue)
        for job in (failing, succeeding, chained, foreign, retried):
            read.wait_for_status(job.id, "succeeded", "failed")
        wait_until(lambda: "task-failed" in of_task(events, failing.id))
        wait_until(lambda: "task-failed" in of_task(events, retried.id))
        wait_until(lambda: "task-succeeded" in of_task(events, succeeding.id))
        wait_until(lambda: "task-succeeded" in of_task(events, foreign.id))

    failed, succeeded = of_task(events, failing.id), of_task(events, succeeding.id)
    assert "***" in failed["task-sent"]["kwargs"]
    assert "***" in failed["task-received"]["kwargs"]
    assert "RuntimeError" in failed["task-failed"]["exception"]
    assert "***" in failed["task-failed"]["traceback"]
    assert "***" in succeeded["task-succeeded"]["result"]
    assert "***" in of_task(events, foreign.id)["task-received"]["kwargs"]
    retry_events = [e for e in events if e.get("uuid") == retried.id]
    assert any(e["type"] == "task-retried" and "***" in e["exception"] for e in retry_events)
    assert len([e for e in retry_events if e["type"] == "task-sent"]) == 2  # the retry's too
    step_sends = [e for e in events if e["type"] == "task-sent" and e["name"] == "example.leaky"]
    assert len(step_sends) >= 4  # two jobs and two chain steps (the second sent by a worker)
    worker_events = [e for e in events if e.get("uuid") != foreign.id or e["type"] != "task-sent"]
    assert leaked(worker_events) == []

    log = events_worker.log()
    assert f"{failing.id}] raised unexpected" in log
    assert "Traceback" in log
    assert leaked(log) == []


def test_flower_shows_the_redacted_payload_and_exception(
    worker: WorkerProcess, flower: str
) -> None:
    info: dict[str, Any] = {}
    for _ in range(3):  # Flower knows a task whole only if it heard all its events
        job = leaky.apply_async(kwargs={**PAYLOAD, "outcome": "fail"})
        read.wait_for_status(job.id, "failed")
        info = flower_task(flower, job.id)
        if info.get("kwargs") is not None:
            break

    assert info.get("state") == "FAILURE", info
    assert "***" in info["kwargs"]
    assert "RuntimeError" in info["exception"]
    assert leaked(json.dumps(info)) == []


def flower_task(base: str, task_id: str) -> dict[str, Any]:
    """Flower's record of a task, once it has seen it fail (or {} after 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=2)
        if answer.status_code == 200 and answer.json().get("state") == "FAILURE":
            return answer.json()  # type: ignore[no-any-return]
        time.sleep(0.2)  # polling interval of the check, not a stand-in for work
    return {}


def published_headers(queue: str) -> list[dict[str, Any]]:
    """The headers of every message waiting in ``queue`` (on either broker)."""
    return [headers for headers, _ in waiting_messages(queue)]


def published_bodies(queue: str) -> list[Any]:
    return [body for _, body in waiting_messages(queue)]


@pytest.mark.parametrize("path", ["delay", "apply_many", "chain", "beat", "republish"])
def test_every_publish_path_sends_redacted_reprs_and_the_real_payload(
    queue: str, path: str
) -> None:
    if path == "delay":
        leaky.apply_async(kwargs=PAYLOAD, queue=queue)
    elif path == "apply_many":
        leaky.apply_many([PAYLOAD, PAYLOAD], queue=queue)
    elif path == "chain":
        leaky_pair.apply_async(kwargs=PAYLOAD, queue=queue)
    elif path == "republish":  # the lifeline's requeue and a manual retry
        job_id = uuid.uuid4()
        operations.publish_existing("example.leaky", PAYLOAD, job_id, str(uuid.uuid4()), queue)
    else:
        entry = ScheduleEntry(
            name="leaky", task="example.leaky", kwargs=PAYLOAD, app=app,
            options={**BEAT_OPTIONS, "queue": queue},
        )  # fmt: skip
        Scheduler(app, lazy=True).apply_async(entry, advance=False)

    headers = published_headers(queue)
    assert headers
    for header in headers:
        assert "***" in header["kwargsrepr"]
        assert leaked([header["argsrepr"], header["kwargsrepr"]]) == []
    # the body keeps what the job needs to run
    assert all(body[1]["text"] == TEXT for body in published_bodies(queue))
