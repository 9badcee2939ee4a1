"""Job type ``suggest``: propose categories for a budget's uncategorized transactions.

Usage::

    from tasks import suggest

    suggest.delay("household")

For each transaction without a category, the proposal is the most frequent category of
the budget's categorized transactions with the same normalised payee
(:func:`tasks._store.normalize_payee`), with ``confidence`` = that category's share of
the payee's categorized history and ``evidence`` = the size of that history. Ties go to
the alphabetically first category, so reruns agree. Payees with no categorized history
get no suggestion.

Everything is read and written within the job's tenant (:attr:`JobContext.tenant`): a
budget of the same name in another tenant is neither read for history nor touched.

Every run replaces the budget's ``pending`` suggestions in one transaction (the old ones
go and the new ones arrive together; a cancel or a failure leaves the previous set as it
was). ``applied`` and ``rejected`` suggestions are the user's decisions: they are never
touched, and a transaction that has one is not proposed for again.

Two phases: the candidates are streamed in batches (a checkpoint and a progress write
after each) and the proposals kept in memory (a few dozen bytes each), then written in
one short transaction with no ledger write inside it. Holding a write transaction open
across the batches would lock a SQLite ledger against the job's own progress writes
(SQLite takes one writer at a time, and waits for none in the same process).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import Field

from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import BudgetId


class SuggestPayload(JobPayload):
    """What ``suggest.delay(...)`` takes."""

    budget_id: BudgetId
    #: Transactions looked at between two cooperative checkpoints.
    batch_size: int = Field(default=1000, ge=1, le=50_000)


#: ``payee_normalized -> (category, confidence, evidence)``
Best = dict[str, tuple[str, float, int]]


@job_task("suggest", SuggestPayload, subject="budget_id", queue="sync")
def suggest(job: JobContext, payload: SuggestPayload) -> dict[str, Any]:
    """Suggest categories for ``payload.budget_id`` (see the module docstring)."""
    tenant = job.tenant
    best = best_categories(_store.category_history(tenant, payload.budget_id))
    total = _store.count_transactions(tenant, payload.budget_id, uncategorized=True)
    job.log(f"{len(best)} payees with categorized history; {total} transactions to look at")
    considered, proposals = propose(job, payload.budget_id, best, total, payload.batch_size)
    job.progress(95, f"writing {len(proposals)} suggestions")
    replaced = _store.replace_pending_suggestions(tenant, payload.budget_id, job.job_id, proposals)
    job.log(
        f"{len(proposals)} suggestions for {considered} uncategorized transactions "
        f"(replaced {replaced} pending ones)"
    )
    return {
        "transactions_considered": considered,
        "suggestions": len(proposals),
        "without_history": considered - len(proposals),
        "replaced_pending": replaced,
    }


def propose(
    job: JobContext,
    budget_id: str,
    best: Best,
    total: int,
    batch_size: int,
    payee: str | None = None,
) -> tuple[int, list[_store.Proposal]]:
    """``(transactions looked at, proposals)`` for the budget's candidates (of one
    normalised ``payee`` only, when given), read in batches with a checkpoint and a
    progress write after each, and a last checkpoint before the caller writes."""
    considered = 0
    proposals: list[_store.Proposal] = []
    for batch in _store.suggestion_candidates(job.tenant, budget_id, batch_size, payee):
        job.check_canceled()
        proposals.extend(
            _store.Proposal(transaction_id, *best[name])
            for transaction_id, name in batch
            if name in best
        )
        considered += len(batch)
        job.progress(95 * considered / max(total, 1), f"{considered} of {total} looked at")
    job.check_canceled()
    return considered, proposals


def best_categories(history: list[tuple[str, str, int]]) -> Best:
    """The most frequent category per payee, its share and the payee's history size."""
    by_payee: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for payee, category, count in history:
        by_payee[payee].append((category, count))
    best: Best = {}
    for payee, counts in by_payee.items():
        category, count = min(counts, key=lambda item: (-item[1], item[0]))
        evidence = sum(n for _, n in counts)
        best[payee] = (category, round(count / evidence, 4), evidence)
    return best
