"""Job type ``sync_and_suggest``: the chain ``sync`` then ``suggest`` for one budget.

Usage::

    from tasks import sync_and_suggest

    result = sync_and_suggest.delay("household", "/data/bank.csv")
    result.id        # the parent job's id in the ledger

``delay()`` validates the payload and both steps' payloads, records the parent job (type
``sync_and_suggest``) and its steps (1 ``sync``, 2 ``suggest``) as ``queued`` in one
transaction, then publishes them as a Celery chain (:mod:`app.ledger.runtime.chain`). The parent
is ``running`` while a step runs and ``succeeded`` after the last; when ``sync`` fails the
parent fails and ``suggest`` becomes ``canceled`` without running. Canceling the parent
stops the step in flight at its next batch and cancels the rest. ``source`` takes every
form :mod:`tasks.sync` accepts.
"""

from __future__ import annotations

from app.ledger.runtime.chain import Step, chain_job
from app.ledger.runtime.task import JobPayload
from tasks._fields import BudgetId
from tasks.sync import SyncSource


class SyncAndSuggestPayload(JobPayload):
    """What ``sync_and_suggest.delay(...)`` takes."""

    budget_id: BudgetId
    source: SyncSource
    full_resync: bool = False


@chain_job(
    "sync_and_suggest",
    SyncAndSuggestPayload,
    steps=[
        Step(
            "sync",
            lambda p: {
                "budget_id": p.budget_id,
                "source": p.source.model_dump(mode="json"),
                "full_resync": p.full_resync,
            },
        ),
        Step("suggest", lambda p: {"budget_id": p.budget_id}),
    ],
    subject="budget_id",
)
def sync_and_suggest() -> None:
    """Pull a budget's transactions, then suggest categories for the uncategorized ones."""
