"""Support for the operations tests: task registration in worker subprocesses, a job type
that is safe to run again after its worker is lost, and back-dating helpers.

Importing this module (the operations test modules do, at collection) adds the
maintenance task modules to ``JOBLEDGER_EXTRA_TASK_MODULES`` so that every worker and
beat subprocess started afterwards registers ``purge``, ``lifeline`` and the job type
below — whether or not ``tasks/__init__.py`` imports them yet.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import redis
from sqlalchemy import text

from app import db
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tests.support.jobs import gate_key, gate_redis

MODULES = ("tasks.maintenance.purge", "tasks.maintenance.lifeline", "tests.support.ops")


def _register_in_subprocesses() -> None:
    current = [n for n in os.environ.get("JOBLEDGER_EXTRA_TASK_MODULES", "").split(",") if n]
    os.environ["JOBLEDGER_EXTRA_TASK_MODULES"] = ",".join(dict.fromkeys([*current, *MODULES]))


_register_in_subprocesses()

import tasks.maintenance.lifeline  # noqa: E402  (registers "lifeline" in this process too)
import tasks.maintenance.purge  # noqa: E402, F401  (registers "purge")


class SafeGatedPayload(JobPayload):
    gate: str


# Started eagerly (lazy_start=False): its tests check `running` (or a cancel intent, a
# lost execution) the moment the body announces itself at its gate.
@job_task("ops.safe_gated", SafeGatedPayload, retry_when_orphaned=True, lazy_start=False)
def safe_gated(job: JobContext, payload: SafeGatedPayload) -> dict[str, Any]:
    """Announce the start on ``<gate>:at``, then wait for one token (heartbeating):
    idempotent, so the lifeline may deliver it again after its worker is lost."""
    client = gate_redis()
    client.rpush(gate_key(payload.gate) + ":at", job.attempt)
    while client.blpop([gate_key(payload.gate)], timeout=1) is None:
        job.check_canceled()
    return {"attempt": job.attempt}


def wait_at(client: redis.Redis, gate: str, timeout: float = 30) -> bytes:
    """Block until the gated job announces it reached a step (no sleeping)."""
    found = client.blpop([gate_key(gate) + ":at"], timeout=timeout)
    assert found is not None, f"gated job {gate} never started"
    return found[1]


def backdate(job_id: uuid.UUID | str, seconds: int) -> None:
    """Move a job's heartbeat and last update ``seconds`` into the past (its creation and
    start too, so the ordering constraints hold)."""
    shift = f"interval '{int(seconds)} seconds'"
    with db.engine().begin() as connection:
        connection.execute(
            text(
                f"UPDATE jobs SET heartbeat_at = heartbeat_at - {shift}, "
                f"updated_at = updated_at - {shift}, created_at = created_at - {shift}, "
                f"started_at = started_at - {shift} WHERE id = :id"
            ),
            {"id": str(job_id)},
        )


def clean_rollups() -> None:
    """Empty the rollups (the shared per-test clean-up truncates the ledger tables only)."""
    with db.engine().begin() as connection:
        connection.execute(text("DELETE FROM job_daily_rollups"))
