"""Job type ``scheduled_sync_and_suggest``: the scheduled form of ``sync_and_suggest``.

The same chain (1 ``sync``, 2 ``suggest``; :mod:`tasks.sync_and_suggest`) with the same
payload, under its own type so that the ledger, its filters, views and queues tell the
runs a schedule made from the ones somebody asked for. Beat makes it from a definition
(trigger ``schedule``, the budget app's name for this type's firings, where every other
type's firings are ``beat``; ``created_by`` ``beat``; the job linked to its definition,
version and ``scheduled_for``): the built-in
definitions ``sync_and_suggest:<budget_id>`` of ``JOBLEDGER_SCHEDULED_BUDGETS`` are of
this type, and so may an operator's own be::

    jobledger definitions create nightly-household --type scheduled_sync_and_suggest \\
        --payload '{"budget_id": "household", "source": "var/data/bank.csv"}' \\
        --cron '0 2 * * *'

A run by hand (``jobledger definitions run``, trigger ``manual``) or through ``delay()``
and the API is the same chain, recorded as asked.
"""

from __future__ import annotations

from app.ledger.runtime.chain import chain_job
from tasks.sync_and_suggest import STEPS, SyncAndSuggestPayload


@chain_job(
    "scheduled_sync_and_suggest",
    SyncAndSuggestPayload,
    steps=STEPS,
    subject="budget_id",
    queue="sync",
    schedule_trigger="schedule",
)
def scheduled_sync_and_suggest() -> None:
    """Pull a budget's transactions, then suggest categories: a scheduled run."""
