"""Job type ``suggestions_apply``: apply the suggestions a user accepted to their
transactions.

Usage::

    from tasks.suggestions_apply import suggestions_apply

    suggestions_apply.delay("household", [101, 102, 107])   # the accepted suggestions' ids

Each accepted suggestion sets its transaction's category and becomes ``applied``, both in
the same database transaction (:func:`tasks._store.apply_suggestions`), ``batch_size``
suggestions per transaction. One that no longer fits is an **item error** naming the
suggestion (``{"suggestion_id": 102, "message": …}``) and is left as it was; the job then
ends ``partial``. It no longer fits when it is not a suggestion of this tenant's budget
(unknown id, another budget's or tenant's, gone with its transaction), its transaction is
gone, it is not ``pending`` (rejected, or applied by another job), its transaction has
another category already, or no transaction of the budget carries its category any more
(the category is unknown to the budget).

A cancel is seen before each batch: the batches committed before it stay applied (each
suggestion whole: its transaction categorised and the suggestion ``applied``, never one
without the other), the rest stay ``pending``; the result of a canceled run is not
recorded, so count them in SQL (``status = 'applied' AND job_id = <job>``). Running the
job again (a redelivery, a retry) applies the rest: the ones it applied before are
counted as ``already_applied``, not as errors.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from pydantic import Field, field_validator

from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import MAX_BIGINT, BudgetId

#: Most suggestions one job applies (a larger set: several jobs).
MAX_SUGGESTIONS = 10_000
#: Highest id a suggestion can have (the column is a bigint): a larger one names no row,
#: and SQLite's driver cannot even bind it (OverflowError in the worker, not an answer).
MAX_ID = MAX_BIGINT


class SuggestionsApplyPayload(JobPayload):
    """What ``suggestions_apply.delay(...)`` takes."""

    budget_id: BudgetId
    #: The accepted suggestions (ids of the ``suggestions`` table), each once.
    suggestion_ids: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_ID)]],
        Field(min_length=1, max_length=MAX_SUGGESTIONS),
    ]
    #: Suggestions applied per database transaction (and between two cancel checks).
    batch_size: int = Field(default=100, ge=1, le=5_000)

    @field_validator("suggestion_ids")
    @classmethod
    def _once_each(cls, value: list[int]) -> list[int]:
        twice = sorted(i for i, n in Counter(value).items() if n > 1)
        if twice:
            raise ValueError(f"lists suggestion(s) {twice} more than once; give each id once")
        return value


@job_task("suggestions_apply", SuggestionsApplyPayload, subject="budget_id", queue="sync")
def suggestions_apply(job: JobContext, payload: SuggestionsApplyPayload) -> dict[str, Any]:
    """Apply the accepted suggestions (see the module docstring)."""
    ids, size = payload.suggestion_ids, payload.batch_size
    counts = {"applied": 0, "already_applied": 0, "failed": 0}
    for start in range(0, len(ids), size):
        job.check_canceled()  # before each batch: after a cancel, none lands
        batch = ids[start : start + size]
        for outcome in _store.apply_suggestions(job.tenant, payload.budget_id, job.job_id, batch):
            if outcome.outcome == "refused":
                counts["failed"] += 1
                job.add_error(
                    f"suggestion {outcome.suggestion_id}: {outcome.problem}",
                    suggestion_id=outcome.suggestion_id,
                    transaction_id=outcome.transaction_id,
                )
            else:
                counts["applied" if outcome.outcome == "applied" else "already_applied"] += 1
        done = start + len(batch)
        job.progress(100 * done / len(ids), f"{done} of {len(ids)} suggestions looked at")
    job.log(
        f"{counts['applied']} suggestions applied, {counts['already_applied']} applied "
        f"before by this job, {counts['failed']} no longer fit"
    )
    return {"requested": len(ids), **counts}
