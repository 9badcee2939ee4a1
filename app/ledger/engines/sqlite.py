"""The SQLite engine (the embedded default): the shared Core statements, with SQLite's
upsert, clock and JSON functions. Every transition is one transaction of its statements;
status counts are read straight from ``jobs`` (an embedded ledger is small by nature)
and nothing is vacuumed after a purge (SQLite reuses freed pages itself)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Float, Integer, func
from sqlalchemy.dialects import sqlite

from app.db import engine
from app.ledger.engines import counts_queries as cq
from app.ledger.engines.core import CoreEngine


class SQLiteEngine(CoreEngine):
    """SQLite: the shared statements; no settled counts, no vacuum."""

    dialect = "sqlite"

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def second_stamp(self) -> ColumnElement[str]:
        return func.strftime("%Y%m%d%H%M%S", "now")

    def seconds_ago(self, seconds: float) -> ColumnElement[Any]:
        # the text app.db's SQLite now() writes (milliseconds), so the two compare as text
        return func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"-{float(seconds)} seconds")

    def json_merge(self, column: Any, document: dict[str, Any]) -> ColumnElement[Any]:
        return func.json_patch(column, json.dumps(document))

    def time_bucket(self, column: Any, unit: Literal["minute", "hour"]) -> ColumnElement[Any]:
        # the text SQLAlchemy stores a datetime as, so it compares with the stored stamps
        pattern = "%Y-%m-%d %H:%M:00.000000" if unit == "minute" else "%Y-%m-%d %H:00:00.000000"
        return func.strftime(pattern, column)

    def seconds_between(self, later: Any, earlier: Any) -> ColumnElement[float]:
        # app.db registers it: Python's own subtraction of the stored stamps (julianday()
        # would blur them: a day number as a double keeps about 50 microseconds)
        return func.jobledger_seconds_between(later, earlier, type_=Float)

    def duration_bucket(self, seconds: ColumnElement[float]) -> ColumnElement[int]:
        return func.jobledger_duration_bucket(seconds, type_=Integer)

    @contextlib.contextmanager
    def consistent_read(self) -> Iterator[Connection]:
        # pysqlite opens no transaction for reads, so each statement sees the latest
        # commit; an explicit BEGIN holds one WAL snapshot for all of them.
        with engine().connect() as connection:
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.exec_driver_sql("ROLLBACK")

    def vacuum(self, tables: Sequence[str]) -> list[str]:
        return []

    def settle_counts(self, margin: timedelta) -> int:
        return 0

    def rebuild_counts(self, margin: timedelta) -> int:
        return 0

    def status_counts(self, *, tenant: str | None, since: datetime | None) -> list[Any]:
        with engine().connect() as connection:
            return list(connection.execute(cq.NAIVE_COUNTS, {"tenant": tenant, "since": since}))

    def status_counts_per_tenant(self) -> list[Any]:
        with engine().connect() as connection:
            return list(connection.execute(cq.NAIVE_COUNTS_PER_TENANT))
