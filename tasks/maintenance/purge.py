"""The ``purge`` job type: the retention purge, run by beat once a day (or by hand with
``jobledger purge``), itself recorded in the ledger like any job.

See :mod:`app.ledger.operations.retention` for what is deleted, archived and rolled up, and why.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.ledger.operations import retention
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class PurgePayload(JobPayload):
    """Options of one purge; unset ones come from the settings."""

    #: Purge terminal jobs finished more than this many days ago
    #: (default ``JOBLEDGER_RETENTION_DAYS``).
    older_than_days: float | None = Field(default=None, ge=0)
    #: Count what would go, write nothing.
    dry_run: bool = False
    #: Jobs per transaction (default ``JOBLEDGER_PURGE_BATCH_SIZE``).
    batch_size: int | None = Field(default=None, ge=1, le=10_000)


@job_task("purge", PurgePayload, queue="maintenance")
def purge(job: JobContext, payload: PurgePayload) -> dict[str, Any]:
    """Purge in batches, reporting progress and honouring a cancel between batches."""

    def between_batches(progress: retention.PurgeResult) -> None:
        done = 100 * progress.deleted // max(progress.candidates, 1)
        job.progress(min(done, 99), f"{progress.deleted} of {progress.candidates} jobs purged")

    result = retention.purge(
        older_than_days=payload.older_than_days,
        dry_run=payload.dry_run,
        batch_size=payload.batch_size,
        exclude_job_id=job.job_id,
        between_batches=between_batches,
    )
    verb = "would delete" if result.dry_run else "deleted"
    job.log(
        f"{verb} {result.deleted} jobs finished before {result.cutoff:%Y-%m-%d %H:%M:%S} UTC "
        f"in {result.batches} batches; archived {result.archived}, rolled up {result.rolled_up}"
    )
    if result.kept_unarchived:
        job.log(retention.kept_message(result.kept_unarchived), "warning")
    return result.as_dict()
