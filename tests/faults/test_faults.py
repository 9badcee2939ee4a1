"""Fault injection with real processes: killed workers, restarted servers, duplicated
messages and hostile inputs. Nothing is lost, nothing stays ``running``, every history is
a valid walk of the state machine, and no transition is recorded twice.

Run alone with ``pytest -m fault``. PostgreSQL and Redis restarts use private servers
started by the test (see :mod:`tests.support.faults`), never the shared ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

import tasks  # noqa: F401  (registers the product's job types in this process)
from app import db
from app.celery import app
from app.exceptions import InvalidJobId, InvalidPayload
from app.ledger import transitions as ledger_writes
from app.ledger.operations import actions as operations
from app.ledger.reads import reports
from app.ledger.rules.states import TERMINAL, JobStatus, is_valid_walk
from app.ledger.runtime.task import JobTask
from app.migrate import upgrade
from app.queues import waiting
from tests.support import ledger
from tests.support.brokers import delete_queue, redis_only
from tests.support.faults import (
    PrivatePostgres,
    PrivateRedis,
    hold,
    ledger_at,
    next_announcement,
    release,
    start_fault_worker,
    wait_announced,
    wait_until,
)
from tests.support.jobs import echo, noisy
from tests.support.processes import ROOT, WorkerProcess

pytestmark = pytest.mark.fault


@pytest.fixture
def queue() -> Iterator[str]:
    """A queue of this test's own: only the workers the test starts consume it."""
    name = f"jobledger-test-fault-{uuid.uuid4().hex[:8]}"
    yield name
    delete_queue(name)


def all_jobs() -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        return [dict(r) for r in connection.execute(text("SELECT * FROM jobs")).mappings()]


def assert_sound_ledger(expected_ids: set[str]) -> list[dict[str, Any]]:
    """Every expected job is there, once, terminal, with a valid history and no
    transition recorded twice; nothing else is there."""
    rows = all_jobs()
    assert {str(row["id"]) for row in rows} == expected_ids
    for row in rows:
        assert JobStatus(row["status"]) in TERMINAL, row
        history = ledger.transitions(row["id"])
        walk = [(None if a is None else JobStatus(a), JobStatus(b)) for a, b in history]
        assert is_valid_walk(walk), (row["id"], history)
        keys = Counter(
            (e["from_status"], e["to_status"], e["attempt"]) for e in ledger.events(row["id"])
        )
        assert max(keys.values()) == 1, (row["id"], keys)
    return rows


def stop_worker(worker: WorkerProcess) -> None:
    if worker.process.poll() is None:
        worker.stop()


# -- SIGKILL ---------------------------------------------------------------------------


def test_twenty_sigkilled_pool_processes_lose_no_job(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """Each round publishes a held job and five echoes, SIGKILLs the pool process the held
    job runs in, and goes on; the killed jobs come back (reject on worker lost) and are
    released as their second attempt reaches the gate. The token is pushed only then: a
    token pushed right after the kill can still be served to the dying process's BLPOP."""
    worker = start_fault_worker(worker_logs, queue, concurrency=2)
    published: set[str] = set()
    held: list[str] = []
    second_due: set[str] = set()

    def answer(gate: str, attempt: int, pid: int, current: str) -> bool:
        if attempt == 1 and gate == current:
            os.kill(pid, signal.SIGKILL)  # mid-job, with other jobs flowing
            second_due.add(gate)
            return True
        assert attempt == 2, (gate, attempt)
        assert gate in second_due, gate
        second_due.discard(gate)
        release(redis_client, gate)
        return False

    try:
        for _ in range(20):
            gate = uuid.uuid4().hex
            job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
            held.append(job.id)
            published.add(job.id)
            published.update(
                echo.apply_async(kwargs={"value": n}, queue=queue).id for n in range(5)
            )
            while not answer(*next_announcement(redis_client, [gate, *second_due]), gate):
                pass
        while second_due:
            answer(*next_announcement(redis_client, list(second_due)), "")
        for job_id in published:
            ledger.wait_for_status(job_id, *TERMINAL, timeout=60)
    finally:
        stop_worker(worker)

    rows = {str(row["id"]): row for row in assert_sound_ledger(published)}
    assert all(row["status"] == "succeeded" for row in rows.values())
    for job_id in held:
        assert rows[job_id]["attempts"] == 2
        assert ledger.transitions(job_id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "retrying"),
            ("retrying", "running"),
            ("running", "succeeded"),
        ]


# -- redelivery ------------------------------------------------------------------------


@redis_only
def test_a_message_redelivered_after_the_visibility_timeout_is_one_job_one_history(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """The whole worker is SIGKILLed mid-job; Redis hands the unacknowledged message to
    the next worker once the visibility timeout passed (5 s here, restore sweep 1 s)."""
    options = {
        "visibility_timeout": 5,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    gate = uuid.uuid4().hex
    first = start_fault_worker(worker_logs, queue, concurrency=1, transport_options=options)
    job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
    try:
        assert wait_announced(redis_client, gate)[0] == 1
        first.kill()  # main process and child: nobody acknowledges, nobody records
    finally:
        stop_worker(first)
    assert ledger.job(job.id)["status"] == "running"  # type: ignore[index]

    second = start_fault_worker(worker_logs, queue, concurrency=1, transport_options=options)
    try:
        assert wait_announced(redis_client, gate, timeout=60)[0] == 2
        release(redis_client, gate)
        ledger.wait_for_status(job.id, "succeeded")
    finally:
        stop_worker(second)

    assert_sound_ledger({job.id})
    assert ledger.transitions(job.id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]


@redis_only
def test_a_finished_job_s_message_delivered_again_does_not_run_nor_write(
    worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    """The raw message is copied while its job runs and pushed back after it finished:
    what a broker that delivers twice (or a visibility timeout shorter than a job) does."""
    worker = start_fault_worker(worker_logs, queue, concurrency=1)
    gate = uuid.uuid4().hex
    try:
        job = hold.apply_async(kwargs={"gate": gate}, queue=queue)
        wait_announced(redis_client, gate)
        raw = next(
            value
            for value in redis_client.hvals("unacked")
            if job.id.encode() in value  # [message, exchange, routing key]
        )
        release(redis_client, gate)
        ledger.wait_for_status(job.id, "succeeded")
        history = ledger.events(job.id)

        message = json.loads(raw)[0]
        for _ in range(2):
            redis_client.lpush(queue, json.dumps(message))
        wait_until(
            lambda: worker.log().count("not run: job is already succeeded") == 2,
            30,
            "both duplicates refused",
        )
    finally:
        stop_worker(worker)

    assert ledger.events(job.id) == history
    assert ledger.job(job.id)["attempts"] == 1  # type: ignore[index]


# -- PostgreSQL restart ------------------------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        upgrade(database_url=server.url)
        yield server
    finally:
        server.destroy()


def test_jobs_survive_a_postgresql_restart_with_their_writes_retried(
    private_postgres: PrivatePostgres, worker_logs: Path, queue: str, redis_client: redis.Redis
) -> None:
    gates = [uuid.uuid4().hex for _ in range(2)]
    with ledger_at(private_postgres.url):
        worker = start_fault_worker(
            worker_logs,
            queue,
            concurrency=2,
            env={"JOBLEDGER_DATABASE_URL": private_postgres.url},
        )
        try:
            held = [hold.apply_async(kwargs={"gate": g}, queue=queue).id for g in gates]
            for gate in gates:
                wait_announced(redis_client, gate)  # both pool processes are mid-job
            waiting = [echo.apply_async(kwargs={"value": n}, queue=queue).id for n in range(20)]
            db.reset()

            private_postgres.stop()  # every connection of the worker is now dead
            for gate in gates:
                release(redis_client, gate)  # their outcomes must be written while it is down
            wait_until(
                lambda: "trying again" in worker.log(), 60, "a ledger write failed and waits"
            )
            private_postgres.start()

            for job_id in [*held, *waiting]:
                ledger.wait_for_status(job_id, *TERMINAL, timeout=60)
            rows = assert_sound_ledger({*held, *waiting})
        finally:
            stop_worker(worker)
    assert {row["status"] for row in rows} == {"succeeded"}
    assert all(row["attempts"] == 1 for row in rows)
    assert "ledger write of" in worker.log()


# -- Redis restart -----------------------------------------------------------------------


def publish_to(broker_url: str, queue: str, count: int) -> list[str]:
    with app.connection_for_write(broker_url) as connection:
        producer = app.amqp.Producer(connection, auto_declare=True)
        return [
            echo.apply_async(kwargs={"value": n}, queue=queue, producer=producer).id
            for n in range(count)
        ]


@pytest.fixture
def volatile_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(persistent=False)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def durable_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(persistent=True)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@redis_only
def test_queued_jobs_lost_with_a_volatile_redis_are_failed_truthfully_by_the_lifeline(
    volatile_redis: PrivateRedis, queue: str
) -> None:
    """Celery promises nothing about messages the broker itself forgets: a Redis without
    persistence loses its queues on restart. The ledger still knows the jobs; the
    lifeline finds their messages gone and fails them with a reason that says so."""
    job_ids = publish_to(volatile_redis.url, queue, 5)
    assert {ledger.job(j)["status"] for j in job_ids} == {"queued"}  # type: ignore[index]

    volatile_redis.stop()
    volatile_redis.start()
    assert waiting(redis.Redis.from_url(volatile_redis.url), queue) == 0  # the messages are gone
    with db.engine().begin() as connection:  # time passes: older than the lifeline timeout
        connection.execute(
            text(
                "UPDATE jobs SET created_at = created_at - interval '600 seconds', "
                "updated_at = updated_at - interval '600 seconds'"
            )
        )
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "lifeline", "--timeout", "300", "--json"],
        cwd=ROOT,
        env={**os.environ, "JOBLEDGER_BROKER_URL": volatile_redis.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["queued_failed"]) == sorted(job_ids)

    rows = assert_sound_ledger(set(job_ids))
    for row in rows:
        assert row["status"] == "failed"
        assert "not in the broker" in row["failure_reason"]
        assert ledger.events(row["id"])[-1]["actor"] == "lifeline"


@redis_only
def test_queued_jobs_survive_a_restart_of_a_redis_with_an_fsynced_aof(
    durable_redis: PrivateRedis, worker_logs: Path, queue: str
) -> None:
    """With ``appendonly yes`` + ``appendfsync always`` the queued messages survive the
    restart (a worker started afterwards runs them), and a worker connected during the
    restart reconnects and runs what is published after it."""
    env = {"JOBLEDGER_BROKER_URL": durable_redis.url}
    connected = start_fault_worker(worker_logs, f"{queue}-live", concurrency=1, env=env)
    try:
        queued = publish_to(durable_redis.url, queue, 10)  # nobody consumes it yet
        durable_redis.stop()
        durable_redis.start()
        assert waiting(redis.Redis.from_url(durable_redis.url), queue) == 10
        later = publish_to(durable_redis.url, f"{queue}-live", 10)
        late = start_fault_worker(worker_logs, queue, concurrency=1, env=env)
        try:
            for job_id in [*queued, *later]:
                ledger.wait_for_status(job_id, *TERMINAL, timeout=60)
        finally:
            stop_worker(late)
    finally:
        stop_worker(connected)
    rows = assert_sound_ledger({*queued, *later})
    assert {row["status"] for row in rows} == {"succeeded"}
    assert all(row["attempts"] == 1 for row in rows)


# -- bad inputs --------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def job_types() -> list[JobTask]:
    return sorted(
        (task for task in app.tasks.values() if isinstance(task, JobTask)),
        key=lambda task: task.name,
    )


def payloads(task: JobTask) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts over the model's own field names (so some pass validation) and a few others."""
    names = st.sampled_from([*task.payload_model.model_fields, "unexpected"]) | st.text()
    return st.dictionaries(names, JSON_VALUES, max_size=5)


@pytest.mark.parametrize("task", job_types(), ids=lambda task: task.name)
def test_a_fuzzed_payload_is_refused_whole_or_recorded_whole(
    task: JobTask, redis_client: redis.Redis
) -> None:
    queue = f"jobledger-test-fuzz-{uuid.uuid4().hex[:8]}"  # nobody consumes it

    @hypothesis_settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(payload=payloads(task))
    def check(payload: dict[str, Any]) -> None:
        before = ledger.count("SELECT count(*) FROM jobs")
        try:
            result = task.apply_async(kwargs=payload, queue=queue)
        except InvalidPayload:
            assert ledger.count("SELECT count(*) FROM jobs") == before
            return
        row = ledger.job(result.id)
        assert row is not None
        assert row["status"] == "queued"
        assert row["type"] == task.name
        assert row["name"]
        assert row["created_at"]
        assert isinstance(row["payload"], dict)
        assert ledger.transitions(result.id)[0] == (None, "queued")
        events = ledger.count("SELECT count(*) FROM job_events WHERE job_id = :id", id=result.id)
        if steps := ledger.count("SELECT count(*) FROM job_steps WHERE job_id = :id", id=result.id):
            assert events == 1 + steps
        else:
            assert events == 1

    try:
        check()
    finally:
        redis_client.delete(queue)


def test_a_one_megabyte_log_line_is_stored_truncated(worker: WorkerProcess) -> None:
    job = noisy.delay(size=1_000_000)
    ledger.wait_for_status(job.id, "succeeded")
    with db.engine().connect() as connection:
        line = connection.execute(
            text("SELECT message FROM job_logs WHERE job_id = :id"), {"id": job.id}
        ).scalar_one()
    assert len(line) <= ledger_writes.MAX_TEXT
    assert line.startswith("x" * 1000)
    assert "truncated" in line


NOT_UUIDS = ["not-a-uuid", "1234", "'; DROP TABLE jobs; --", "00000000-0000-0000-0000"]


@pytest.mark.parametrize("ref", NOT_UUIDS)
def test_a_job_id_that_is_not_a_uuid_is_refused_by_the_query_and_operation_functions(
    ref: str,
) -> None:
    for call in (
        lambda: reports.job_detail(ref),
        lambda: reports.resolve_job_id(ref),
        lambda: operations.cancel(ref, actor="cli"),
        lambda: operations.retry(ref, actor="cli"),
    ):
        with pytest.raises(InvalidJobId, match="is not a job id"):
            call()


@pytest.mark.parametrize(
    "write",
    [
        lambda ref: ledger_writes.request_cancel(ref, actor="cli", reason="x"),
        lambda ref: ledger_writes.record_failed(ref, reason="x"),
        lambda ref: ledger_writes.record_canceled(ref, reason="x"),
        lambda ref: ledger_writes.append_log(ref, "x"),
        lambda ref: ledger_writes.checkpoint(ref, "execution"),
    ],
    ids=["request_cancel", "record_failed", "record_canceled", "append_log", "checkpoint"],
)
def test_a_job_id_that_is_not_a_uuid_is_refused_by_the_ledger_writes(write: Any) -> None:
    with pytest.raises(InvalidJobId, match="'not-a-uuid' is not a job id"):
        write("not-a-uuid")


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
def test_a_job_id_that_is_not_a_uuid_gets_a_clear_error_from_the_cli(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", command, "not-a-uuid"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "'not-a-uuid' is not a job id" in done.stderr
    assert "Traceback" not in done.stderr
