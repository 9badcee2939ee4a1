"""Who is behind an operator's action, carried to every event the action writes.

Usage (the API, the CLI and bulk operations wrap their ledger calls)::

    from app.ledger.rules.attribution import attributed

    with attributed("ci-key", operation_id=12):
        actions.cancel(job_id, actor="api")     # its events: actor_name 'ci-key', operation 12

``job_events.actor`` says which tool moved a job (``api``, ``cli``…); ``actor_name`` says
who used it (the API key's name) and ``operation_id`` which bulk operation the event is
part of. They ride in a context variable rather than as two more parameters of every
transition: the transitions are shared with the worker's paths, which never have either,
and a value set here cannot leak into another request (each thread and task has its own
context).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Attribution:
    """The person (key name) and bulk operation behind the events being written."""

    name: str | None = None
    operation_id: int | None = None


#: Nobody in particular: the worker's own transitions, a producer's ``delay()``.
NOBODY = Attribution()
_CURRENT: ContextVar[Attribution | None] = ContextVar("jobledger_attribution", default=None)


def current() -> Attribution:
    """The attribution of the events written now (empty outside :func:`attributed`)."""
    return _CURRENT.get() or NOBODY


@contextmanager
def attributed(name: str | None, *, operation_id: int | None = None) -> Iterator[Attribution]:
    """Attribute the events written inside the block to ``name`` (and ``operation_id``)."""
    attribution = Attribution(name=name, operation_id=operation_id)
    token = _CURRENT.set(attribution)
    try:
        yield attribution
    finally:
        _CURRENT.reset(token)
