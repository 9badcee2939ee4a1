"""Job type ``sync_and_suggest``: the chain ``sync`` then ``suggest`` for one budget.

Usage::

    from tasks import sync_and_suggest

    result = sync_and_suggest.delay("household", "/data/bank.csv")
    result.id        # the parent job's id in the ledger

``delay()`` validates the payload and both steps' payloads, records the parent job (type
``sync_and_suggest``) and its steps (1 ``sync``, 2 ``suggest``) as ``queued`` in one
transaction, then publishes them as a Celery chain (:mod:`app.ledger.runtime.chain`). The parent
is ``running`` while a step runs and ``succeeded`` after the last; when ``sync`` fails the
parent fails and ``suggest`` becomes ``canceled`` without running. Canceling the parent
stops the step in flight at its next batch and cancels the rest. ``source`` takes every
form :mod:`tasks.sync` accepts.

Beat runs it for each budget of ``JOBLEDGER_SCHEDULED_BUDGETS`` every
``JOBLEDGER_SYNC_INTERVAL`` seconds (3600), as the built-in definition
``sync_and_suggest:<budget_id>`` (:func:`budget_runs`; created if missing when beat starts,
then edited like any definition: :mod:`app.schedule`), trigger ``beat`` as the design
states. An operator's own definition may use the scheduled form instead,
``scheduled_sync_and_suggest`` (:mod:`tasks.scheduled_sync_and_suggest`: the same chain,
its firings recorded with trigger ``schedule``). Accepted forms::

    JOBLEDGER_SCHEDULED_BUDGETS='b1=var/data/b1.csv,b2=database://bank/bank_tx'
    JOBLEDGER_SCHEDULED_BUDGETS='{"b1": "/data/b1.csv"}'
    JOBLEDGER_SCHEDULED_BUDGETS='[{"budget_id": "b1", "source": "/data/b1.csv",
                                   "full_resync": false, "tenant": "acme"}]'

(use a JSON form when a source contains a comma).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from app.config import JobledgerSettings, settings
from app.ledger.runtime.chain import Step, chain_job
from app.ledger.runtime.task import JobPayload
from app.schedule import BuiltinDefinition, builtin, every
from tasks._fields import BudgetId
from tasks.sync import SyncSource


class SyncAndSuggestPayload(JobPayload):
    """What ``sync_and_suggest.delay(...)`` takes."""

    budget_id: BudgetId
    source: SyncSource
    full_resync: bool = False


#: The steps, shared with the scheduled form (:mod:`tasks.scheduled_sync_and_suggest`).
STEPS = (
    Step(
        "sync",
        lambda p: {
            "budget_id": p.budget_id,
            "source": p.source.model_dump(mode="json"),
            "full_resync": p.full_resync,
        },
    ),
    Step("suggest", lambda p: {"budget_id": p.budget_id}),
)


@chain_job(
    "sync_and_suggest", SyncAndSuggestPayload, steps=STEPS, subject="budget_id", queue="sync"
)
def sync_and_suggest() -> None:
    """Pull a budget's transactions, then suggest categories for the uncategorized ones."""


class BudgetSchedule(JobledgerSettings):
    """The scheduled runs of ``sync_and_suggest`` (see the module docstring)."""

    #: Scheduled sync runs: JSON object/list or ``budget_id=source`` pairs, comma separated.
    scheduled_budgets: str = ""
    #: Seconds between two scheduled ``sync_and_suggest`` runs of each budget.
    sync_interval: float = Field(default=3600, gt=0)


@dataclass(frozen=True)
class ScheduledBudget:
    """One budget whose ``sync_and_suggest`` beat runs on a schedule."""

    budget_id: str
    source: str
    full_resync: bool = False
    tenant: str | None = None


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


@builtin
def budget_runs(config: BudgetSchedule | None = None) -> list[BuiltinDefinition]:
    """One built-in definition per scheduled budget, from ``config`` (default: the
    settings).

    Raises:
        ValueError: ``JOBLEDGER_SCHEDULED_BUDGETS`` is malformed; the message shows the
            accepted forms.
    """
    config = config or settings.of(BudgetSchedule)
    found = []
    for budget in scheduled_budgets(config.scheduled_budgets):
        payload: dict[str, Any] = {"budget_id": budget.budget_id, "source": budget.source}
        if budget.full_resync:
            payload["full_resync"] = True
        found.append(
            BuiltinDefinition(
                name=f"sync_and_suggest:{budget.budget_id}",
                type="sync_and_suggest",
                schedule=every(config.sync_interval),
                payload=payload,
                tenant=budget.tenant or "default",
            )
        )
    return found
