"""The generic (SQLite) path of the hot transitions keeps the same guards and events as
PostgreSQL's single-statement fast path (tests/integration/test_transitions.py runs that one)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import db
from app.config import settings
from app.ledger import transitions as ledger
from app.ledger.rules.states import JobStatus
from app.migrate import upgrade


@pytest.fixture
def sqlite_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", url)
    settings.cache_clear()
    db.reset()
    upgrade(database_url=url)
    assert not db.is_postgresql()
    yield
    db.reset()
    monkeypatch.undo()
    settings.cache_clear()


def history(job_id: uuid.UUID) -> list[tuple[str | None, str]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT from_status, to_status FROM job_events WHERE job_id = :id ORDER BY id"),
            {"id": job_id.hex},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.mark.usefixtures("sqlite_ledger")
def test_queued_started_redelivered_and_finished_on_sqlite() -> None:
    job_id = uuid.uuid4()
    assert ledger.record_queued(ledger.NewJob(id=job_id, type="example.echo", payload={}))
    assert not ledger.record_queued(ledger.NewJob(id=job_id, type="example.echo", payload={}))
    first = ledger.record_started(job_id, celery_task_id="t", execution_id="e1", worker="w")
    again = ledger.record_started(job_id, celery_task_id="t", execution_id="e1", worker="w")
    second = ledger.record_started(job_id, celery_task_id="t", execution_id="e2", worker="w")
    assert (first.attempt, again.run, second.attempt) == (1, True, 2)
    assert ledger.record_finished(job_id, execution_id="e1", result=None) is None
    assert (
        ledger.record_finished(job_id, execution_id="e2", result={"ok": 1}) is JobStatus.SUCCEEDED
    )
    assert history(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]


@pytest.mark.usefixtures("sqlite_ledger")
def test_metadata_notes_merge_on_sqlite() -> None:
    job_id = uuid.uuid4()
    new = ledger.NewJob(id=job_id, type="import", payload={}, metadata={"source": "cron"})
    ledger.record_queued(new)
    ledger.record_started(job_id, celery_task_id="t", execution_id="e1", worker="w")
    with db.engine().begin() as connection:
        assert ledger.note_metadata(connection, job_id, "e1", {"rows_committed": 5})
        assert not ledger.note_metadata(connection, job_id, "e0", {"rows_committed": 9})
    with db.engine().connect() as connection:
        stored = connection.execute(
            text("SELECT metadata FROM jobs WHERE id = :id"), {"id": job_id.hex}
        ).scalar_one()
    assert json.loads(stored) == {"source": "cron", "rows_committed": 5}
