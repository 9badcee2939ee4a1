"""The beat schedule, built from the settings: ``app.conf.beat_schedule = build_schedule()``.

Entries:

- ``lifeline``: the lifeline job every ``JOBLEDGER_LIFELINE_INTERVAL`` seconds (60).
- ``purge``: the retention purge job daily at ``JOBLEDGER_PURGE_AT`` (``HH:MM`` UTC, 03:30).
- ``settle_counts``: settles the status counts every ``JOBLEDGER_SETTLE_INTERVAL`` seconds
  (60). A plain Celery task, not a job: it changes no job, and a ledger row every minute
  would bury the jobs operators look for (:mod:`tasks.maintenance.settle_counts`).
- ``sync_and_suggest:<budget_id>``: one per budget of ``JOBLEDGER_SCHEDULED_BUDGETS``,
  every ``JOBLEDGER_SYNC_INTERVAL`` seconds (3600). Accepted forms::

      JOBLEDGER_SCHEDULED_BUDGETS='b1=var/data/b1.csv,b2=database://bank/bank_tx'
      JOBLEDGER_SCHEDULED_BUDGETS='{"b1": "/data/b1.csv"}'
      JOBLEDGER_SCHEDULED_BUDGETS='[{"budget_id": "b1", "source": "/data/b1.csv",
                                     "full_resync": false, "tenant": "acme"}]'

  (use a JSON form when a source contains a comma).

Every entry's ``options`` carry ``trigger="beat"`` and ``created_by="beat"``: beat calls
``task.apply_async(args, kwargs, **entry.options)`` for a task registered in its process
(celery/beat.py ``Scheduler.apply_async``), and :meth:`app.ledger.runtime.task.JobTask.apply_async`
takes them as the job's description, so the ledger row says the run came from beat.
(Beat imports the task modules — ``imports`` — at start; a task it does not know is sent by
name and the worker records the job as ``producer``.) Each entry ``expires`` after one
period (at least 30 s; the purge after 12 h): a run nobody picked up before the next one
is due is canceled in the ledger ("expired before a worker ran it") instead of piling up
behind a stopped worker.

Run exactly **one** beat: every beat process publishes every entry, so two beats double
every run (two purges, two lifelines, two syncs per budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ScheduledBudget:
    """One budget whose ``sync_and_suggest`` beat runs on a schedule."""

    budget_id: str
    source: str
    full_resync: bool = False
    tenant: str | None = None


def build_schedule(config: Settings | None = None) -> dict[str, dict[str, Any]]:
    """The ``beat_schedule`` of the application, from ``config`` (default: the settings).

    Raises:
        ValueError: ``JOBLEDGER_SCHEDULED_BUDGETS`` or ``JOBLEDGER_PURGE_AT`` is malformed;
            the message shows the accepted forms.
    """
    config = config or settings()
    hour, minute = _time_of_day(config.purge_at)
    schedule: dict[str, dict[str, Any]] = {
        "lifeline": {
            "task": "lifeline",
            "schedule": config.lifeline_interval,
            "options": {**BEAT_OPTIONS, "expires": max(config.lifeline_interval, MIN_EXPIRES)},
        },
        "purge": {
            "task": "purge",
            "schedule": crontab(hour=hour, minute=minute),
            "options": {**BEAT_OPTIONS, "expires": PURGE_EXPIRES},
        },
        "settle_counts": {
            "task": "settle_counts",
            "schedule": config.settle_interval,
            "options": {"expires": max(config.settle_interval, MIN_EXPIRES)},
        },
    }
    for budget in scheduled_budgets(config.scheduled_budgets):
        kwargs: dict[str, Any] = {"budget_id": budget.budget_id, "source": budget.source}
        if budget.full_resync:
            kwargs["full_resync"] = True
        options: dict[str, Any] = {
            **BEAT_OPTIONS,
            "expires": max(config.sync_interval, MIN_EXPIRES),
        }
        if budget.tenant:
            options["tenant"] = budget.tenant
        schedule[f"sync_and_suggest:{budget.budget_id}"] = {
            "task": "sync_and_suggest",
            "schedule": config.sync_interval,
            "kwargs": kwargs,
            "options": options,
        }
    return schedule


def scheduled_budgets(value: str) -> list[ScheduledBudget]:
    """Parse ``JOBLEDGER_SCHEDULED_BUDGETS`` (see the module docstring for the forms)."""
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(_budgets_error(value, str(error))) from None
        if isinstance(document, dict):
            return [ScheduledBudget(str(k), str(v)) for k, v in document.items()]
        return [_budget_entry(entry, value) for entry in document]
    budgets = []
    for pair in filter(None, (part.strip() for part in text.split(","))):
        budget_id, sep, source = pair.partition("=")
        if not sep or not budget_id.strip() or not source.strip():
            raise ValueError(_budgets_error(value, f"{pair!r} is not budget_id=source"))
        budgets.append(ScheduledBudget(budget_id.strip(), source.strip()))
    return budgets


def _budget_entry(entry: Any, value: str) -> ScheduledBudget:
    if not isinstance(entry, dict) or not entry.get("budget_id") or not entry.get("source"):
        raise ValueError(_budgets_error(value, f"{entry!r} needs budget_id and source"))
    return ScheduledBudget(
        budget_id=str(entry["budget_id"]),
        source=str(entry["source"]),
        full_resync=bool(entry.get("full_resync", False)),
        tenant=entry.get("tenant"),
    )


def _budgets_error(value: str, problem: str) -> str:
    return (
        f"JOBLEDGER_SCHEDULED_BUDGETS={value!r}: {problem}. Use 'budget=source,…', a JSON "
        'object {"budget": "source"} or a JSON list of {"budget_id": …, "source": …}'
    )


def _time_of_day(value: str) -> tuple[int, int]:
    hour, sep, minute = value.strip().partition(":")
    if sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    raise ValueError(f"JOBLEDGER_PURGE_AT={value!r}: use HH:MM (UTC), e.g. 03:30")
