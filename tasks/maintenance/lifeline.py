"""The ``lifeline`` job type: one pass of :func:`app.ledger.operations.lifeline.run_once`, run by
beat every ``JOBLEDGER_LIFELINE_INTERVAL`` seconds (default 60), itself in the ledger.

It never acts on itself: it is running with a fresh heartbeat while it looks, and its own
id is excluded besides.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.ledger.operations import lifeline as rescue
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class LifelinePayload(JobPayload):
    """Options of one pass; unset ones come from the settings."""

    #: Seconds without a heartbeat after which a running job counts as orphaned
    #: (default ``JOBLEDGER_LIFELINE_TIMEOUT``).
    timeout: float | None = Field(default=None, gt=0)
    #: Also ask the workers who is alive (one broadcast, about a second) and treat the
    #: jobs of a worker that does not answer as orphaned after 30 s of silence. Off by
    #: default: a worker too busy to answer one ping would lose jobs that heartbeat less
    #: often than every 30 s.
    ping: bool = False


@job_task("lifeline", LifelinePayload, queue="maintenance")
def lifeline(job: JobContext, payload: LifelinePayload) -> dict[str, Any]:
    """Fail or re-queue orphaned running jobs, fail queued jobs whose message is gone."""
    result = rescue.run_once(timeout=payload.timeout, ping=payload.ping, exclude_job_id=job.job_id)
    changed = len(result.failed) + len(result.requeued) + len(result.queued_failed)
    if changed or result.restored:
        job.log(
            f"failed {len(result.failed)} orphaned, re-queued {len(result.requeued)}, "
            f"failed {len(result.queued_failed)} queued without a message, gave back "
            f"{len(result.restored)} messages of gone workers",
            level="warning",
        )
    return result.as_dict()
