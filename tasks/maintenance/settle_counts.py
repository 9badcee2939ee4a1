"""The ``settle_counts`` job type: moves finished jobs into the settled status counts
(:func:`app.ledger.reads.counts.settle`) and the hourly trend rollups
(:func:`app.ledger.reads.trends.settle`), run from its built-in definition every
``JOBLEDGER_SETTLE_INTERVAL`` seconds (60), itself in the ledger like the lifeline.

A job, so that it is scheduled, edited, disabled and seen like every other scheduled run.
Running it late, twice or concurrently is harmless: settles serialise on the watermark
row and each starts where the last one ended.
"""

from __future__ import annotations

from app.ledger.reads import counts, trends
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class SettleCountsPayload(JobPayload):
    """No options: a settle moves the watermark to one minute ago."""


@job_task("settle_counts", SettleCountsPayload, queue="maintenance")
def settle_counts(job: JobContext, payload: SettleCountsPayload) -> dict[str, int]:
    """How many finished jobs were settled into the counts, and into the trend rollups."""
    return {"settled": counts.settle(), "trends": trends.settle()}
