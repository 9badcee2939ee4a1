"""Maintenance job types: what beat runs to keep the ledger itself in order, apart from the
domain job types of :mod:`tasks`.

- ``purge`` (:mod:`tasks.maintenance.purge`): the daily retention purge, a job.
- ``lifeline`` (:mod:`tasks.maintenance.lifeline`): rescues orphaned and lost jobs, a job.
- ``settle_counts`` (:mod:`tasks.maintenance.settle_counts`): keeps the status counts, a
  plain Celery task (not a job).

Their beat entries are in :mod:`app.schedule`; the work itself is in
:mod:`app.ledger.operations` and :mod:`app.ledger.reads.counts`.
"""
