"""The tasks the benchmarks run, loaded by benchmark workers through
``JOBLEDGER_EXTRA_TASK_MODULES=benchmarks._tasks``.

Three no-op tasks, one per variant of ``benchmarks/throughput.py``, so the variants differ
only in what records them:

- ``bench.plain``: a plain Celery task, no result, no ledger (variant a);
- ``bench.stored``: a plain Celery task whose result Celery's SQLAlchemy result backend
  stores (variant b). The backend is switched on only in workers started with
  ``JOBLEDGER_BENCH_RESULT_BACKEND`` (the application itself runs without one);
- ``bench.noop``: a job task recorded in the ledger (variant c).

``bench.stamped`` returns the wall-clock time its body ended, for ``benchmarks/lag.py``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from app.celery import app
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task

_backend = os.environ.get("JOBLEDGER_BENCH_RESULT_BACKEND")
if _backend:
    # Set before any task runs: the worker reads ``app.backend`` lazily, per thread.
    app.conf.result_backend = _backend


@app.task(name="bench.plain", ignore_result=True)
def plain() -> None:
    """Nothing: the cost of Celery alone."""


@app.task(name="bench.stored", ignore_result=False)
def stored() -> None:
    """Nothing, but the result (None) is stored by the result backend, if one is set."""


class NoopPayload(JobPayload):
    """An empty payload: the benchmark measures the ledger, not validation."""


@job_task("bench.noop", NoopPayload)
def noop(job: JobContext, payload: NoopPayload) -> None:
    """Nothing: the cost of the ledger around a job."""


@job_task("bench.stamped", NoopPayload)
def stamped(job: JobContext, payload: NoopPayload) -> dict[str, Any]:
    """Return the wall-clock time the body ended (the start of the ledger lag)."""
    return {"returned_at": time.time()}
