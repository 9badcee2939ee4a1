"""jobledger: Celery tasks whose every job leaves a complete record in a relational ledger.

- :mod:`app.config` the settings of the ledger, Celery, the API and maintenance;
  :mod:`app.celery` the Celery application (``celery -A app worker`` finds it there);
  :mod:`app.schedule` what beat runs (the built-in definitions, the plain-task entries);
  :mod:`app.db` the database connections.
- :mod:`app.ledger` the state machine and every write to it, in layers (rules, engines,
  the transitions, runtime, operations, reads: see its docstring for where things go).
- :mod:`app.api` the HTTP API and dashboard; :mod:`app.cli` the ``jobledger`` command.
- :mod:`app.testing` real workers and throwaway ledgers for tests (this project's and
  its users').

The job types are not here: each is one module in ``tasks/`` (maintenance ones in
``tasks/maintenance/``), with the settings and beat entries only it needs.

This package deliberately imports nothing, so that ``models`` and the migrations can use
:mod:`app.ledger.rules.states` without loading Celery.
"""
