"""The statements of the ledger counters (``ledger_counters``: counts that only grow and
survive restarts, such as ``write_retries``), named, each with a one-line comment."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Update, func, select, update

from models.tables import ledger_counters

#: Ledger writes tried again after a lost connection or a locked database (app.db).
WRITE_RETRIES = "write_retries"


def read_counter(name: str) -> Select[Any]:
    # One counter's value.
    return select(ledger_counters.c.value).where(ledger_counters.c.name == name)


def add_to_counter(name: str, amount: int) -> Update:
    # Raise one counter (its row is made by the migration).
    return (
        update(ledger_counters)
        .where(ledger_counters.c.name == name)
        .values(value=ledger_counters.c.value + amount, updated_at=func.now())
    )
