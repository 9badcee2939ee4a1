"""Unit tests: no PostgreSQL, no Redis, no worker. Nothing here may connect: the run of
``tests/unit`` with both services unreachable is part of ``.ci/run``."""
