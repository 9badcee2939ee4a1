"""Test support shipped with the package: real workers and throwaway ledgers.

- :mod:`app.testing.workers`: start real ``celery -A app worker`` processes and wait until
  they answer; stop, kill or inspect them (used by this project's tests and benchmarks).
- :mod:`app.testing.databases`: make, migrate, empty and drop a PostgreSQL ledger database.
- :mod:`app.testing.pytest_plugin`: an opt-in pytest plugin whose fixtures run *your* job
  types through a real worker against a throwaway ledger (README, "Testing your job
  types"). Opt-in (``-p app.testing.pytest_plugin``), not a ``pytest11`` entry point: it
  sets the ledger and broker variables of the test process, which must not happen in
  every pytest run of an environment where the package is installed.

Importing this package loads neither Celery nor the settings.
"""
