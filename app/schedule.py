"""The beat schedule: ``app.conf.beat_schedule = build_schedule()``.

The maintenance entries, from :class:`app.config.Settings`:

- ``lifeline``: the lifeline job every ``JOBLEDGER_LIFELINE_INTERVAL`` seconds (60).
- ``purge``: the retention purge job daily at ``JOBLEDGER_PURGE_AT`` (``HH:MM`` UTC, 03:30).
- ``settle_counts``: settles the status counts every ``JOBLEDGER_SETTLE_INTERVAL`` seconds
  (60). A plain Celery task, not a job: it changes no job, and a ledger row every minute
  would bury the jobs operators look for (:mod:`tasks.maintenance.settle_counts`).

A job type declares its own entries in its module with :func:`beat_entries` (the
``sync_and_suggest:<budget_id>`` runs of ``JOBLEDGER_SCHEDULED_BUDGETS``:
:mod:`tasks.sync_and_suggest`). Beat imports the task modules (``imports``) before it
reads the schedule, and a declaration adds its entries to the Celery app's schedule as
its module is imported.

Every job entry's ``options`` carry ``trigger="beat"`` and ``created_by="beat"``
(:data:`BEAT_OPTIONS`): beat calls ``task.apply_async(args, kwargs, **entry.options)``
for a task registered in its process (celery/beat.py ``Scheduler.apply_async``), and
:meth:`app.ledger.runtime.task.JobTask.apply_async` takes them as the job's description,
so the ledger row says the run came from beat. (A task beat does not know is sent by
name and the worker records the job as ``producer``.) Each entry ``expires`` after one
period (at least 30 s; the purge after 12 h): a run nobody picked up before the next one
is due is canceled in the ledger ("expired before a worker ran it") instead of piling up
behind a stopped worker.

Run exactly **one** beat: every beat process publishes every entry, so two beats double
every run (two purges, two lifelines, two syncs per budget).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.schedules import crontab

from app.config import Settings, settings

#: Entry options that make the ledger record the job as started by beat.
BEAT_OPTIONS: dict[str, Any] = {"trigger": "beat", "created_by": "beat"}
#: Longest a daily purge message may wait for a worker before it expires.
PURGE_EXPIRES = 12 * 3600
#: Shortest expiry of a scheduled message, however short its period (a busy worker
#: needs a moment to reach it).
MIN_EXPIRES = 30.0


#: Beat entries by name, as ``beat_schedule`` takes them.
Schedule = dict[str, dict[str, Any]]

_declared: list[Callable[[], Schedule]] = []


def beat_entries(declare: Callable[[], Schedule]) -> Callable[[], Schedule]:
    """Declare a job type's beat entries (a decorator in the job type's module):
    ``declare()`` returns them from the job type's settings; :func:`build_schedule`
    includes them, and so does the Celery app's schedule from now on.

    Raises:
        ValueError: the job type's schedule settings are malformed (from ``declare()``).
    """
    _declared.append(declare)
    from app.celery import app  # late: app.celery builds its schedule with this module

    app.conf.beat_schedule = {**app.conf.beat_schedule, **declare()}
    return declare


def expires(period: float) -> float:
    """Seconds a scheduled message run every ``period`` seconds may wait for a worker."""
    return max(period, MIN_EXPIRES)


def build_schedule(config: Settings | None = None) -> Schedule:
    """The ``beat_schedule`` of the application: the maintenance entries from ``config``
    (default: the settings) and the entries the job types imported so far declare.

    Raises:
        ValueError: ``JOBLEDGER_PURGE_AT`` or a job type's schedule setting is malformed;
            the message shows the accepted forms.
    """
    config = config or settings()
    hour, minute = _time_of_day(config.purge_at)
    schedule: Schedule = {
        "lifeline": {
            "task": "lifeline",
            "schedule": config.lifeline_interval,
            "options": {**BEAT_OPTIONS, "expires": expires(config.lifeline_interval)},
        },
        "purge": {
            "task": "purge",
            "schedule": crontab(hour=hour, minute=minute),
            "options": {**BEAT_OPTIONS, "expires": PURGE_EXPIRES},
        },
        "settle_counts": {
            "task": "settle_counts",
            "schedule": config.settle_interval,
            "options": {"expires": expires(config.settle_interval)},
        },
    }
    for declare in _declared:
        schedule.update(declare())
    return schedule


def _time_of_day(value: str) -> tuple[int, int]:
    hour, sep, minute = value.strip().partition(":")
    if sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    raise ValueError(f"JOBLEDGER_PURGE_AT={value!r}: use HH:MM (UTC), e.g. 03:30")
