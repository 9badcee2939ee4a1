"""The job ledger: the state machine and every write to it.

Modules, each with one job:

- :mod:`~app.ledger.states`: the statuses, their allowed predecessors, the vocabularies.
- :mod:`~app.ledger.redaction`: secrets out of anything a job writes.
- :mod:`~app.ledger.queries`: every statement the ledger runs, named.
- :mod:`~app.ledger.transitions`: one function per transition; the only way a job changes.
- :mod:`~app.ledger.task`: the base class of job tasks (payload validation at ``delay()``).
- :mod:`~app.ledger.context`: what a running job sees (progress, log, cancel checks).
- :mod:`~app.ledger.steps`: transitions of a chained job's steps and their parent.
- :mod:`~app.ledger.chain`: the base class of chained job types (steps as a Celery chain).
- :mod:`~app.ledger.signals`: thin adapters from Celery signals onto the transitions.
- :mod:`~app.ledger.operations`: operator actions (cancel, retry) = transition + message.
- :mod:`~app.ledger.lifeline`: rescue of jobs orphaned by dead workers or lost messages.
- :mod:`~app.ledger.retention`: the retention purge, archive and daily rollups.
- :mod:`~app.ledger.reports`: every read of the ledger (CLI, API, dashboard).

Import the submodule you need (``from app.ledger import transitions``); this package
itself imports nothing so that ``models`` can use the states without loading Celery.
"""
