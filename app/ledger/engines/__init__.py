"""The ledger's SQL: one engine per database behind one interface.

- :mod:`~app.ledger.engines.base`: the :class:`~app.ledger.engines.base.Engine` interface
  and the values that cross it;
- :mod:`~app.ledger.engines.core`: the statement families both engines share (Core);
- :mod:`~app.ledger.engines.postgresql`, :mod:`~app.ledger.engines.sqlite`: the engines;
- :mod:`~app.ledger.engines.queries`, ``retention_queries``, ``counts_queries``: the
  named statements; :mod:`~app.ledger.engines.prepared`: PostgreSQL prepared statements.

:func:`current` is the only place that asks which database the ledger is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.db import engine

if TYPE_CHECKING:
    from app.ledger.engines.base import Engine

_engines: dict[str, Engine] = {}


def current() -> Engine:
    """The engine of the ledger's database (``JOBLEDGER_DATABASE_URL``), one per dialect
    (made on first use; a ledger URL changed in a test, with ``app.db.reset()``, is
    followed)."""
    dialect = engine().dialect.name
    found = _engines.get(dialect)
    if found is None:
        found = _engines[dialect] = _make(dialect)
    return found


def _make(dialect: str) -> Engine:
    if dialect == "postgresql":
        from app.ledger.engines.postgresql import PostgreSQLEngine

        return PostgreSQLEngine()
    if dialect == "sqlite":
        from app.ledger.engines.sqlite import SQLiteEngine

        return SQLiteEngine()
    raise RuntimeError(f"no ledger engine for {dialect!r}: the ledger runs on PostgreSQL or SQLite")
