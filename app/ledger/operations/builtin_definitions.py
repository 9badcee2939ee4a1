"""The built-in definitions (purge, lifeline, the job types' scheduled runs;
:mod:`app.schedule`) created in the ledger when they are missing.

Called when beat starts (:class:`app.ledger.runtime.beat.LedgerScheduler`) and by
``jobledger definitions init``. A definition that exists is left exactly as it is, even
if the environment variable it was made from has changed since: the definition is the
schedule now, and an operator's edit (through the API or the CLI) wins. Two beats
starting together both try; the second finds the name taken and moves on.
"""

from __future__ import annotations

import logging

from app.config import settings
from app.exceptions import DefinitionExists
from app.ledger import definitions
from app.ledger.definitions import Definition
from app.ledger.rules.actors import Actor
from app.schedule import builtin_definitions

logger = logging.getLogger(__name__)


def ensure_builtin_definitions(
    *, actor: Actor = "beat", changed_by: str | None = "beat"
) -> list[Definition]:
    """Create each built-in definition that does not exist yet (by tenant and name);
    the ones created (none when all exist).

    Raises:
        ValueError: a setting they are made from is malformed (``JOBLEDGER_PURGE_AT``,
            ``JOBLEDGER_SCHEDULED_BUDGETS``…); the message names it.
    """
    _import_task_modules()  # the job types declare theirs as their modules are imported
    created = []
    for wanted in builtin_definitions():
        if definitions.get(wanted.tenant, wanted.name) is not None:
            continue
        try:
            created.append(
                definitions.create(
                    tenant=wanted.tenant,
                    name=wanted.name,
                    type=wanted.type,
                    payload=wanted.payload,
                    schedule=wanted.schedule,
                    catch_up=wanted.catch_up,
                    actor=actor,
                    changed_by=changed_by,
                )
            )
        except DefinitionExists:
            continue  # made meanwhile by another beat or an operator: theirs stands
    return created


def _import_task_modules() -> None:
    import importlib

    for module in settings().task_modules():
        importlib.import_module(module)
