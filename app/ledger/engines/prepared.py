"""Server-side prepared statements for the transitions every job takes (PostgreSQL).

Queued, running and finished (for a quick job: the lazy start's read, then its start and
outcome together) run once per job each, so their cost is the ledger's cost.
Why prepared: sent as text, PostgreSQL parses and plans each data-modifying CTE on every
call and SQLAlchemy builds an execution context around it; prepared on the driver's
cursor, both costs go (measured: benchmarks/RESULTS.md, session of 2026-11-25).

So each statement is prepared once per server connection (``PREPARE``, remembered in the
pooled connection's ``info``, which a reconnect starts afresh) and executed on the
driver's cursor (:func:`app.db.on_driver_cursor`: same retries, same errors).

Behind a pooler that hands one client several server connections (PgBouncer in
transaction mode), a prepared statement may be missing: set
``JOBLEDGER_PREPARED_STATEMENTS=false`` and the same statement is sent as text instead.
A prepared statement the server has lost (``DISCARD ALL``) is prepared again.

Each statement names the ledger column each stored parameter goes to (``columns``), and
:meth:`Prepared.first_row` passes those through :func:`app.ledger.rules.sanitise.clean`, as
the Core statements pass their rows: the fast path sanitises what it writes exactly as
the generic path does. ``jsonb`` parameters are taken as Python values and encoded here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.config import settings
from app.db import on_driver_cursor
from app.ledger.rules.sanitise import clean

_PREPARED_HERE = "jobledger_prepared"
#: SQLSTATEs: the server does not know the statement / knows it already.
_UNKNOWN_STATEMENT, _DUPLICATE_STATEMENT = "26000", "42P05"


@dataclass(frozen=True)
class Prepared:
    """One statement with positional parameters ``$1…$n`` of the given SQL types.

    ``prefix`` runs first in the same implicit transaction (``SET LOCAL …``);
    ``columns`` maps the number of each parameter the statement stores to its column.
    """

    name: str
    types: tuple[str, ...]
    body: str
    prefix: str = ""
    columns: Mapping[int, str] = field(default_factory=dict)
    _as_text: str = field(init=False, repr=False)
    _json: tuple[int, ...] = field(init=False, repr=False)
    _call: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The text form for servers without prepared statements: $k -> CAST(%(pk)s AS type)
        as_text = re.sub(
            r"\$(\d+)",
            lambda m: f"CAST(%(p{m.group(1)})s AS {self.types[int(m.group(1)) - 1]})",
            self.body.replace("%", "%%"),
        )
        object.__setattr__(self, "_as_text", as_text)
        json_params = tuple(n for n, sql_type in enumerate(self.types) if sql_type == "jsonb")
        object.__setattr__(self, "_json", json_params)
        placeholders = ", ".join(["%s"] * len(self.types))
        object.__setattr__(self, "_call", f"{self.prefix}EXECUTE {self.name}({placeholders})")

    def first_row(self, args: tuple[Any, ...], what: str) -> tuple[Any, ...] | None:
        """Execute with ``args`` (one per ``$k``, in order); the first row it returns."""
        row: tuple[Any, ...] | None = self._run(args, what, _fetch)
        return row

    def all_rows(self, args: tuple[Any, ...], what: str) -> list[tuple[Any, ...]]:
        """Execute with ``args`` (one per ``$k``, in order); every row it returns."""
        rows: list[tuple[Any, ...]] = self._run(args, what, _fetch_all)
        return rows

    def _run(self, args: tuple[Any, ...], what: str, fetch: Callable[[Any, str, Any], Any]) -> Any:
        if not settings().prepared_statements:
            if len(args) != len(self.types):
                raise TypeError(f"{self.name} takes {len(self.types)} arguments, got {len(args)}")
            named = {f"p{n}": value for n, value in enumerate(self._bind(args), start=1)}
            text = self.prefix + self._as_text
            return on_driver_cursor(lambda c, _: fetch(c, text, named), what)
        return on_driver_cursor(lambda c, info: self._execute(c, info, args, fetch), what)

    def _bind(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """``args`` as stored: sanitised for their column, ``jsonb`` ones encoded."""
        bound = list(args)
        for number, column in self.columns.items():
            bound[number - 1] = clean(column, bound[number - 1])
        for index in self._json:
            bound[index] = _as_json(bound[index])
        return tuple(bound)

    def prepare_sql(self) -> str:
        """The ``PREPARE`` of this statement."""
        return f"PREPARE {self.name} ({', '.join(self.types)}) AS {self.body}"

    def execute_sql(self, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        """The ``EXECUTE`` of the prepared statement with ``args``, and its parameters
        as stored (:meth:`_bind`), for a driver cursor's ``execute``."""
        if len(args) != len(self.types):
            raise TypeError(f"{self.name} takes {len(self.types)} arguments, got {len(args)}")
        return self._call, self._bind(args)

    def _execute(
        self,
        cursor: Any,
        info: dict[str, Any],
        args: tuple[Any, ...],
        fetch: Callable[[Any, str, Any], Any],
    ) -> Any:
        prepared: set[str] = info.setdefault(_PREPARED_HERE, set())
        if self.name not in prepared:
            self._prepare(cursor)
            prepared.add(self.name)
        call = self.execute_sql(args)
        try:
            return fetch(cursor, *call)
        except Exception as error:
            if getattr(error, "pgcode", None) != _UNKNOWN_STATEMENT:
                raise
            self._prepare(cursor)  # the server forgot it (DISCARD ALL): once more
            return fetch(cursor, *call)

    def _prepare(self, cursor: Any) -> None:
        try:
            cursor.execute(self.prepare_sql())
        except Exception as error:
            if getattr(error, "pgcode", None) != _DUPLICATE_STATEMENT:
                raise


def _as_json(value: Any) -> str:
    """``json.dumps(value)``, without the encoder for ``None`` and an empty list or dict
    (the result and errors of most jobs)."""
    if value is None:
        return "null"
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value)


def _fetch(cursor: Any, sql: str, args: Any) -> tuple[Any, ...] | None:
    cursor.execute(sql, args)
    row: tuple[Any, ...] | None = cursor.fetchone() if cursor.description else None
    return row


def _fetch_all(cursor: Any, sql: str, args: Any) -> list[tuple[Any, ...]]:
    cursor.execute(sql, args)
    rows: list[tuple[Any, ...]] = cursor.fetchall() if cursor.description else []
    return rows
