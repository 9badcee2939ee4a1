"""jobledger: Celery tasks whose every job leaves a complete record in a relational ledger.

The Celery application lives in :mod:`app.celery` (``celery -A app worker`` finds it
there); this package deliberately imports nothing, so that ``models`` and the
migrations can use :mod:`app.ledger.rules.states` without loading Celery.
"""
