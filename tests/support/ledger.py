"""Reading the ledger in tests: plain SQL, as an operator would."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import text

from app import db
from app.ledger.rules.states import JobStatus, is_valid_walk


def job(job_id: uuid.UUID | str) -> dict[str, Any] | None:
    with db.engine().connect() as connection:
        row = (
            connection.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": str(job_id)})
            .mappings()
            .first()
        )
        return None if row is None else dict(row)


def events(job_id: uuid.UUID | str) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT * FROM job_events WHERE job_id = :id ORDER BY id"), {"id": str(job_id)}
        ).mappings()
        return [dict(row) for row in rows]


def transitions(job_id: uuid.UUID | str) -> list[tuple[str | None, str]]:
    return [(e["from_status"], e["to_status"]) for e in events(job_id) if e["step_id"] is None]


def all_transitions() -> dict[str, list[tuple[str | None, str]]]:
    """Every job's :func:`transitions`, by job id, read in one query."""
    walks: dict[str, list[tuple[str | None, str]]] = {}
    with db.engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT job_id, from_status, to_status FROM job_events "
                "WHERE step_id IS NULL ORDER BY job_id, id"
            )
        )
        for job_id, from_status, to_status in rows:
            walks.setdefault(str(job_id), []).append((from_status, to_status))
    return walks


def names() -> list[str]:
    with db.engine().connect() as connection:
        return [row[0] for row in connection.execute(text("SELECT name FROM jobs"))]


def count(sql: str, **params: Any) -> int:
    with db.engine().connect() as connection:
        return int(connection.execute(text(sql), params).scalar_one())


def wait_for_status(job_id: uuid.UUID | str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the ledger until the job has one of ``statuses`` (or fail with what it has)."""
    deadline = time.monotonic() + timeout
    row = job(job_id)
    while time.monotonic() < deadline:
        row = job(job_id)
        if row is not None and row["status"] in statuses:
            return row
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"job {job_id} not {statuses} after {timeout}s: {row}")


def has_valid_history(job_id: uuid.UUID | str) -> bool:
    """Whether the job's own events are a walk of the state machine (every edge one of
    :data:`~app.ledger.rules.states.PREDECESSORS`)."""
    walk = [(None if a is None else JobStatus(a), JobStatus(b)) for a, b in transitions(job_id)]
    return is_valid_walk(walk)
