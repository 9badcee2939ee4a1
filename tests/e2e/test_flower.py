"""Flower against the test broker: its HTTP API returns a task a real worker ran and
every job of a batch, and refuses callers without the configured basic auth."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ledger
from tests.support.brokers import delete_queue
from tests.support.jobs import echo
from tests.support.processes import ROOT, WorkerProcess

AUTH = ("ops", "s3cret")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def flower(tmp_path: Path) -> Iterator[str]:
    """``celery -A app flower`` with basic auth on a free localhost port; its base URL."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "app",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
            ],
            cwd=ROOT,
            env={**os.environ, "FLOWER_BASIC_AUTH": ":".join(AUTH)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{base}/api/tasks", auth=AUTH, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)  # polling interval of the start-up check
        yield base
    finally:
        process.terminate()
        process.wait(15)


def task_info(base: str, task_id: str, wait: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=2)
        if answer.status_code == 200 and answer.json().get("state") == "SUCCESS":
            return answer.json()  # type: ignore[no-any-return]
        time.sleep(0.2)  # polling interval of the check, not a stand-in for work
    return None


def test_flower_api_returns_a_task_the_worker_ran(worker: WorkerProcess, flower: str) -> None:
    # Flower learns about tasks from worker events from the moment its receiver is up;
    # a task finished in the instant before that is not in its memory, and one whose
    # task-received event came just before it knows no name (seen under load): run another.
    info = None
    for value in range(6):
        job = echo.delay(value=value)
        ledger.wait_for_status(job.id, "succeeded")
        info = task_info(flower, job.id, wait=10)
        if info is not None and info.get("name") is not None:
            break

    assert info is not None, "Flower never reported the task"
    assert info["uuid"] == job.id
    assert info["name"] == "example.echo"
    assert info["worker"] == worker.name
    listed = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
    assert job.id in listed


def test_flower_api_refuses_callers_without_credentials(flower: str) -> None:
    assert httpx.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    assert httpx.get(f"{flower}/api/tasks", auth=("ops", "wrong"), timeout=5).status_code == 401


def test_flower_lists_every_job_of_a_batch(flower: str) -> None:
    """``apply_many`` sends a chunk's task-sent events in one message (``task.multi``, as
    a worker sends its buffered task events): Flower lists each job, named and pending."""
    queue = f"jobledger-test-flower-{uuid.uuid4().hex[:8]}"
    listed: dict[str, Any] = {}
    ids: list[str] = []
    try:
        # Flower's receiver may connect after its API answers: a batch sent before that
        # is not in its memory; send another.
        for _ in range(6):
            ids = [
                result.id
                for result in echo.apply_many([{"value": n} for n in range(20)], queue=queue)
            ]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                listed = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=5).json()
                if set(ids) <= set(listed):
                    break
                time.sleep(0.2)  # polling interval of the check, not a stand-in for work
            if set(ids) <= set(listed):
                break
    finally:
        delete_queue(queue)

    assert set(ids) <= set(listed), "Flower never listed the batch"
    assert {(listed[i]["name"], listed[i]["state"]) for i in ids} == {("example.echo", "PENDING")}
