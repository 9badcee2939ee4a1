"""How ``import`` commits its batches, driven directly against PostgreSQL (no worker):
what lands when PostgreSQL refuses a row, and what the job notes about it."""

from __future__ import annotations

import uuid

from app.ledger import transitions as ledger
from app.ledger.runtime.context import JobContext
from tasks import _store
from tasks.import_data import Batch, ImportPayload, _DatasetWriter
from tests.support import domain
from tests.support.ledger import job as ledger_job


def running_import(dataset: str) -> tuple[JobContext, ImportPayload]:
    """An ``import`` job recorded as running, and the context its body would get."""
    job_id = uuid.uuid4()
    payload = ImportPayload(source="rows.jsonl", dataset=dataset)
    document = payload.model_dump(mode="json")
    ledger.record_queued(ledger.NewJob(id=job_id, type="import", payload=document))
    ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e1", worker="w")
    return JobContext(job_id, "e1", attempt=1), payload


def test_a_batch_postgresql_refuses_is_written_row_by_row() -> None:
    """A value no check foresaw (here a NaN that skipped validation) makes PostgreSQL
    refuse the batch: its other rows still land and the refused one is an item error."""
    dataset = domain.unique("refused")
    job, payload = running_import(dataset)
    counts = Batch(
        rows=[(None, {"n": 1}), (None, {"n": float("nan")}), (None, {"n": 3})],
        numbers=[2, 3, 4],
        read=3,
    )

    _DatasetWriter(job, payload).commit(counts, 1.0)

    assert (counts.imported, counts.failed) == (2, 1)
    (error,) = job.errors
    assert error["row"] == 3
    assert error["message"].startswith("PostgreSQL refused a value of this row")
    assert "NaN" not in error["message"]  # the database's message, not the row's data
    assert domain.dataset_rows(dataset) == [{"n": 1}, {"n": 3}]
    metadata = ledger_job(job.job_id)["metadata"]  # type: ignore[index]
    assert (metadata["rows_committed"], metadata["last_committed_row"]) == (2, 4)


def test_rows_committed_is_noted_only_for_the_current_execution() -> None:
    """A stale execution (another delivery took the job over) notes nothing."""
    dataset = domain.unique("stale")
    job, _ = running_import(dataset)
    dataset_id = _store.open_dataset("default", dataset, ["n"], None)
    stale = JobContext(job.job_id, "an-older-execution", attempt=1)

    _store.write_rows(
        "default", dataset_id, job.job_id, [(None, {"n": 1})], also=stale.noting(rows_committed=1)
    )
    _store.write_rows(
        "default", dataset_id, job.job_id, [(None, {"n": 2})], also=job.noting(rows_committed=2)
    )

    assert ledger_job(job.job_id)["metadata"] == {"rows_committed": 2}  # type: ignore[index]
