"""What operators and maintenance do to jobs: cancel and retry, the lifeline that rescues
jobs orphaned by dead workers, and the retention purge.

A new operator command is a function here, changing jobs only through
:mod:`app.ledger.transitions` and :mod:`app.ledger.steps`; ``app/cli.py`` and the API
call it. The maintenance job types that beat runs are in ``tasks/maintenance/``."""
