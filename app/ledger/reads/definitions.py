"""Reading definitions as their interfaces show them: the definition, its schedule in
words and its last run.

Usage::

    from app.ledger import definitions
    from app.ledger.reads import definitions as definition_reads

    found = definitions.list_(tenant="acme")
    documents = definition_reads.documents(found)   # JSON-ready, with ``last_run``

The definitions themselves are read through :mod:`app.ledger.definitions` (the door);
this module only adds what the ledger knows about their runs. The API, the CLI's
``--json`` and the dashboard show the same document.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import select

from app.db import engine
from app.ledger.definitions import Definition
from app.ledger.engines.base import aware
from app.ledger.reads.reports import jsonable
from models.tables import jobs

#: Columns of a definition's last run shown with it.
LAST_RUN_COLUMNS = (
    "id",
    "name",
    "status",
    "trigger",
    "definition_version",
    "scheduled_for",
    "created_at",
    "completed_at",
)


#: The timestamps among them, shown in UTC with their offset.
TIMESTAMPS = ("scheduled_for", "created_at", "completed_at")


def last_runs(definition_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The newest job of each definition that has one, by definition id."""
    found: dict[uuid.UUID, dict[str, Any]] = {}
    if not definition_ids:
        return found
    columns = [jobs.c[name] for name in LAST_RUN_COLUMNS]
    with engine().connect() as connection:
        for definition_id in definition_ids:
            row = connection.execute(
                select(*columns)
                .where(jobs.c.definition_id == definition_id)
                .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                found[definition_id] = {
                    # SQLite reads timestamps back naive: UTC, as the definition's own
                    key: aware(value) if key in TIMESTAMPS and value is not None else value
                    for key, value in row._mapping.items()
                }
    return found


def document(definition: Definition, last_run: dict[str, Any] | None) -> dict[str, Any]:
    """One definition as JSON: its fields, ``schedule_text``, ``archived``, ``last_run``
    (the newest job made from it, or null) and ``last_status`` (that job's status)."""
    values: dict[str, Any] = {
        item.name: getattr(definition, item.name) for item in fields(definition)
    }
    values["schedule_text"] = definition.schedule_text if definition.schedule else None
    values["archived"] = definition.archived
    values["last_run"] = last_run
    values["last_status"] = last_run["status"] if last_run else None
    result: dict[str, Any] = jsonable(values)
    return result


def documents(definitions: Sequence[Definition]) -> list[dict[str, Any]]:
    """:func:`document` of each definition, in the order given."""
    runs = last_runs([definition.id for definition in definitions])
    return [document(definition, runs.get(definition.id)) for definition in definitions]
