"""The retention purge and the archive-only job types (``interface_run``), on both
engines: without an archive such jobs (and a parent that would cascade to them) stay and
are counted as kept; with one they are written to it, then deleted, like any job."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app import db
from app.ledger import engines
from app.ledger import transitions as ledger
from app.ledger.operations.retention import purge
from models.tables import jobs
from tests.support.engines import each_engine  # noqa: F401  (the fixture)

pytestmark = pytest.mark.usefixtures("each_engine")


def old_job(job_type: str, parent: uuid.UUID | None = None, days: int = 40) -> uuid.UUID:
    """A job walked through the ledger to ``succeeded``, then placed ``days`` back (test
    set-up: the purge's clock is the database's)."""
    job_id = uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(
            id=job_id, type=job_type, payload={}, celery_task_id=str(job_id), parent_job_id=parent
        )
    )
    ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e", worker="w")
    ledger.record_finished(job_id, execution_id="e", result={"records_imported": 3})
    with db.engine().begin() as connection:
        now = engines.current().database_now(connection)
        past = now - timedelta(days=days)
        connection.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(created_at=past, started_at=past, completed_at=past + timedelta(seconds=1))
        )
    return job_id


def remaining() -> set[uuid.UUID]:
    with db.engine().connect() as connection:
        return {uuid.UUID(str(i)) for i in connection.execute(select(jobs.c.id)).scalars()}


def test_without_an_archive_interface_runs_and_their_parents_stay_and_are_counted() -> None:
    run = old_job("interface_run")
    other = old_job("import")
    parent = old_job("example.parent")
    child_run = old_job("interface_run", parent=parent)
    recent = old_job("interface_run", days=1)

    dry = purge(older_than_days=30, archive_dir=None, dry_run=True, pause_factor=0)
    done = purge(older_than_days=30, archive_dir=None, pause_factor=0)

    assert (dry.candidates, dry.kept_unarchived) == (1, 2)
    assert (done.deleted, done.archived, done.kept_unarchived) == (1, 0, 2)
    assert remaining() == {run, parent, child_run, recent}
    assert other not in remaining()


def test_with_an_archive_interface_runs_are_written_to_it_then_deleted(tmp_path: Path) -> None:
    run = old_job("interface_run")
    other = old_job("import")

    done = purge(older_than_days=30, archive_dir=tmp_path, pause_factor=0)

    assert (done.deleted, done.archived, done.kept_unarchived) == (2, 2, 0)
    assert remaining() == set()
    archived = {
        json.loads(line)["job"]["id"]: json.loads(line)["job"]["type"]
        for path in done.archive_files
        for line in gzip.decompress(Path(path).read_bytes()).splitlines()
    }
    assert archived == {str(run): "interface_run", str(other): "import"}
