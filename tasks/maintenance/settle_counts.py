"""``settle_counts``: moves finished jobs into the settled status counts
(:func:`app.ledger.reads.counts.settle`), run by beat every ``JOBLEDGER_SETTLE_INTERVAL`` seconds.

A plain Celery task, not a job task: it changes no job (only a cache of counts that
``stats()`` reads), and a ledger row every minute would bury the jobs operators look
for. Running it late, twice or concurrently is harmless: settles serialise on the
watermark row and each starts where the last one ended.
"""

from __future__ import annotations

from app.celery import app
from app.ledger.reads import counts


@app.task(name="settle_counts", ignore_result=True)  # type: ignore[untyped-decorator]
def settle_counts() -> int:
    """How many finished jobs were settled."""
    return counts.settle()
