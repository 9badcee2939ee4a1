"""One delivery of a target in the pool process that runs it, kept on the Celery request.

Usage (what :class:`~app.ledger.runtime.task.JobTask` does)::

    target, execution_id = target_of(task.request), new_execution_id()   # task_prerun
    start = target.start(execution_id=execution_id, ...)   # or a lazy start's target
    keep(task.request, Execution(target, execution_id, start))
    ...
    execution_of(task.request).context = JobContext(target, execution_id, ...)  # __call__
    execution_of(task.request)                                # body, retry, task_retry

One object carries what the prerun handler, the task's ``__call__`` and ``retry`` and the
``task_retry`` handler share: the target, this execution's id, the start verdict and the
body's :class:`~app.ledger.runtime.context.JobContext`. A plain job whose start is
written lazily has a :class:`~app.ledger.runtime.lazy_start.LazyJobTarget` here, through
which every write of the execution writes the pending start first. It lives on the request of the
pool process only: Celery never copies request attributes back to the worker's main
process, whose handlers (``task_revoked``, a lost pool process) resolve the target again
from the header or the task id (:mod:`app.ledger.runtime.target`).

It is not kept as ``request.jobledger``: Celery makes each custom header an attribute of
the request, and that name holds the ``jobledger`` header itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from app.ledger.runtime.context import JobContext
from app.ledger.runtime.target import Target
from app.ledger.transitions import Start

#: The request attribute holding the :class:`Execution`.
ATTRIBUTE = "jobledger_run"


@dataclass
class Execution:
    """This delivery of ``target``: its execution id and start verdict (it is kept once
    the start is recorded), then the context its body runs with."""

    target: Target
    execution_id: str
    start: Start
    context: JobContext | None = None


def new_execution_id() -> str:
    """The id of a new execution: the ledger's fence against stale ones."""
    return str(uuid.uuid4())


def keep(request: Any, execution: Execution) -> Execution:
    """Keep ``execution`` on ``request`` (replacing any earlier one)."""
    setattr(request, ATTRIBUTE, execution)
    return execution


def execution_of(request: Any) -> Execution | None:
    """The execution kept on ``request``; None where none began (the main process, a
    task that is not a job task)."""
    execution = getattr(request, ATTRIBUTE, None)
    return execution if isinstance(execution, Execution) else None


def context_of(request: Any) -> JobContext:
    """The context the body of the running job sees.

    Raises:
        RuntimeError: no job body runs under this request.
    """
    execution = execution_of(request)
    if execution is None or execution.context is None:
        raise RuntimeError("no job execution runs under this request")
    return execution.context
