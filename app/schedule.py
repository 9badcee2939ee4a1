"""What beat runs: the built-in definitions (jobs, in the ledger), and the entries an
application adds to ``app.conf.beat_schedule`` itself (none built in).

Beat takes its schedule from the ledger's definitions
(:class:`app.ledger.runtime.beat.LedgerScheduler`). The maintenance jobs and the job types'
scheduled runs are **built-in definitions**, created if missing when beat starts (and by
``jobledger definitions init``; :mod:`app.ledger.operations.builtin_definitions`), from
:class:`app.config.Settings`:

- ``lifeline``: the lifeline job every ``JOBLEDGER_LIFELINE_INTERVAL`` seconds (60);
- ``purge``: the retention purge job daily at ``JOBLEDGER_PURGE_AT`` (``HH:MM`` UTC, 03:30);
- ``settle_counts``: settles the status counts every ``JOBLEDGER_SETTLE_INTERVAL`` seconds
  (60);
- the definitions a job type declares with :func:`builtin` in its module (the
  ``sync_and_suggest:<budget_id>`` runs of ``JOBLEDGER_SCHEDULED_BUDGETS``:
  :mod:`tasks.sync_and_suggest`).

Those variables are only the values the definitions are created with: once a definition
exists, it is the definition that counts (edit it with the API or ``jobledger
definitions``); an operator's edit is never overwritten.

Entries an application adds to ``beat_schedule`` are sent by Celery's own heap, by the
beat holding the lease only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings, settings

#: Entry options that make the ledger record a job sent by a ``beat_schedule`` entry as
#: started by beat (an application's own entries; the built-in ones are definitions).
BEAT_OPTIONS: dict[str, Any] = {"trigger": "beat", "created_by": "beat"}


#: Beat entries by name, as ``beat_schedule`` takes them.
Schedule = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class BuiltinDefinition:
    """A definition beat creates when it is missing (the arguments of
    :func:`app.ledger.definitions.create`)."""

    name: str
    type: str
    schedule: dict[str, Any]
    payload: dict[str, Any] = field(default_factory=dict)
    tenant: str = "default"
    catch_up: str = "skip"


_declared: list[Callable[[], list[BuiltinDefinition]]] = []


def builtin(
    declare: Callable[[], list[BuiltinDefinition]],
) -> Callable[[], list[BuiltinDefinition]]:
    """Declare a job type's built-in definitions (a decorator in the job type's module):
    ``declare()`` returns them from the job type's settings, and
    :func:`builtin_definitions` includes them from now on.

    Raises:
        ValueError: the job type's schedule settings are malformed (from ``declare()``).
    """
    _declared.append(declare)
    return declare


def builtin_definitions(config: Settings | None = None) -> list[BuiltinDefinition]:
    """The built-in definitions: the maintenance jobs from ``config`` (default: the
    settings) and those the job types imported so far declare.

    Raises:
        ValueError: ``JOBLEDGER_PURGE_AT`` or a job type's schedule setting is malformed;
            the message shows the accepted forms.
    """
    config = config or settings()
    hour, minute = _time_of_day(config.purge_at)
    found = [
        BuiltinDefinition("lifeline", "lifeline", every(config.lifeline_interval)),
        BuiltinDefinition("purge", "purge", {"cron": f"{minute} {hour} * * *", "timezone": "UTC"}),
        BuiltinDefinition("settle_counts", "settle_counts", every(config.settle_interval)),
    ]
    for declare in _declared:
        found.extend(declare())
    return found


def every(seconds: float) -> dict[str, Any]:
    """The schedule ``{"every": seconds}`` (whole seconds, at least one: an interval
    schedule counts in seconds)."""
    return {"every": max(1, round(seconds))}


def build_schedule() -> Schedule:
    """The ``beat_schedule`` the application starts with: empty, every built-in schedule
    is a definition (:func:`builtin_definitions`)."""
    return {}


def _time_of_day(value: str) -> tuple[int, int]:
    hour, sep, minute = value.strip().partition(":")
    if sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    raise ValueError(f"JOBLEDGER_PURGE_AT={value!r}: use HH:MM (UTC), e.g. 03:30")
