"""Example job types of the run-controls tests (queues, priorities, time limits, retry
policies). Not product features: each makes one control visible in the ledger.

Importing this module (the test modules that use it do, at collection) adds it to
``JOBLEDGER_EXTRA_TASK_MODULES`` so that every worker started afterwards registers these
types, as :mod:`tests.support.chains` does for its own.
"""

from __future__ import annotations

from typing import Any

from app.ledger.runtime.chain import Step, chain_job
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tests.support.processes import register_in_subprocesses

MODULE = "tests.support.controls"


register_in_subprocesses(MODULE)


class ValuePayload(JobPayload):
    value: int


@job_task("example.exported", ValuePayload, queue="export")
def exported(job: JobContext, payload: ValuePayload) -> dict[str, Any]:
    """A job of the ``export`` family that does nothing but answer its value."""
    return {"value": payload.value}


class RoutedPairPayload(JobPayload):
    value: int


@chain_job(
    "example.routed_pair",
    RoutedPairPayload,
    steps=[
        Step("example.echo", lambda p: {"value": p.value}),
        Step("example.exported", lambda p: {"value": p.value}),
    ],
)
def routed_pair() -> None:
    """Two steps of two queues: ``example.echo`` (``celery``), ``example.exported``
    (``export``)."""
