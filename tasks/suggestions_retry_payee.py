"""Job type ``suggestions_retry_payee``: regenerate the suggestions of one payee of a
budget.

Usage::

    from tasks.suggestions_retry_payee import suggestions_retry_payee

    suggestions_retry_payee.delay("household", "Coffee Shop #12")   # any spelling of it

The payee is normalised as ``suggest`` groups payees (:func:`tasks._store.normalize_payee`:
``"COFFEE SHOP #12"`` is ``coffee shop``). The payee's ``pending`` suggestions are replaced
by fresh ones, computed as ``suggest`` does (:func:`tasks.suggest.best_categories`) from
the payee's categorized history as it is now, in one transaction; every other payee's
suggestions, and the payee's ``applied`` and ``rejected`` ones, are not touched. A payee
without categorized history gets no suggestion (its pending ones go). A payee the budget
has no transaction of fails the job naming ``payee`` (nothing to retry: a typo).

Cancel checkpoints come while the candidates are read; the replacement is one short
transaction after them, so a cancel leaves the previous suggestions as they were.
Running it twice gives the same suggestions.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import BudgetId
from tasks.suggest import best_categories, propose


class SuggestionsRetryPayeePayload(JobPayload):
    """What ``suggestions_retry_payee.delay(...)`` takes."""

    budget_id: BudgetId
    #: The payee, as booked or normalised.
    payee: Annotated[str, Field(min_length=1, max_length=1024)]
    #: Transactions looked at between two cooperative checkpoints.
    batch_size: int = Field(default=1000, ge=1, le=50_000)

    @field_validator("payee")
    @classmethod
    def _has_letters(cls, value: str) -> str:
        if not _store.normalize_payee(value):
            raise ValueError(
                "has no letters: payees are matched on their letters (digits and "
                "punctuation are dropped)"
            )
        return value


@job_task(
    "suggestions_retry_payee", SuggestionsRetryPayeePayload, subject="budget_id", queue="sync"
)
def suggestions_retry_payee(
    job: JobContext, payload: SuggestionsRetryPayeePayload
) -> dict[str, Any]:
    """Regenerate one payee's suggestions (see the module docstring)."""
    tenant, budget = job.tenant, payload.budget_id
    payee = _store.normalize_payee(payload.payee)
    if _store.count_transactions(tenant, budget, payee) == 0:
        raise JobFailed(
            f"field 'payee': budget {budget!r} has no transaction of payee {payee!r} "
            "(normalised); nothing to retry"
        )
    best = best_categories(_store.category_history(tenant, budget, payee))
    total = _store.count_transactions(tenant, budget, payee, uncategorized=True)
    job.log(f"payee {payee!r}: {total} uncategorized transactions; best {best.get(payee)}")
    considered, proposals = propose(job, budget, best, total, payload.batch_size, payee)
    replaced = _store.replace_pending_suggestions(tenant, budget, job.job_id, proposals, payee)
    job.log(f"{len(proposals)} suggestions for payee {payee!r} (replaced {replaced} pending)")
    category = best.get(payee)
    return {
        "payee": payee,
        "category": None if category is None else category[0],
        "transactions_considered": considered,
        "suggestions": len(proposals),
        "replaced_pending": replaced,
    }
