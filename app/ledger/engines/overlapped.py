"""A prepared statement sent on a non-blocking psycopg2 connection, with other work done
while PostgreSQL runs and commits it (PostgreSQL only).

Usage::

    row, made = OVERLAPPED.first_row(RECORD_QUEUED, args, "job … queued", build_message)

Why: a ``delay()`` records its job in one autocommitted statement whose durable commit
(the WAL flush) is most of the ledger's cost, and the producer then builds the job's
message, Celery's Python. With psycopg2's asynchronous connection the statement is sent,
``meanwhile()`` runs (the message is built, not sent), and only then is the reply read:
the two overlap instead of adding up, in one thread (no second thread competing for the
GIL). The caller sends the message only after the row and its event are committed.

One such connection per process, used by one thread at a time: a thread that finds it
busy, a forked child (the parent's connection is left alone, never closed from here),
a server without prepared statements (``JOBLEDGER_PREPARED_STATEMENTS=false``) and any
error on it take the pooled path (:meth:`Prepared.first_row`: its retries, its
:class:`~app.exceptions.LedgerUnavailable`). After an error the statement runs again
there; the statements it serves are idempotent (an id recorded twice is recorded once).
The connection is the pooled ones' twin (same URL, autocommit, as every asynchronous
psycopg2 connection is); it counts as one more connection per producer process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.extras

from app.config import settings
from app.db import autocommit_engine, network_parameters
from app.ledger.engines.prepared import Prepared

T = TypeVar("T")
log = logging.getLogger(__name__)


class Overlapped:
    """The process's non-blocking connection (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._connection: Any = None
        self._engine: Any = None  # the pooled engine it is the twin of
        self._prepared: set[str] = set()

    def first_row(
        self, statement: Prepared, args: tuple[Any, ...], what: str, meanwhile: Callable[[], T]
    ) -> tuple[tuple[Any, ...] | None, T]:
        """``statement``'s first row, and what ``meanwhile()`` returned (run while the
        statement ran, or after it on the pooled path). ``meanwhile`` must not raise."""
        if not settings().prepared_statements or not self._lock.acquire(blocking=False):
            return statement.first_row(args, what), meanwhile()
        try:
            cursor = self._send(statement, args)
            try:
                made = meanwhile()
            except BaseException:
                if cursor is not None:  # the statement's reply, before the connection's reuse
                    self._read(cursor)
                raise
            if cursor is None:
                return statement.first_row(args, what), made
            read, row = self._read(cursor)
            if not read:
                return statement.first_row(args, what), made  # idempotent: see above
            return row, made
        finally:
            self._lock.release()

    def _read(self, cursor: Any) -> tuple[bool, tuple[Any, ...] | None]:
        """Whether the statement ran, and its first row (when it failed, the connection
        is dropped)."""
        try:
            psycopg2.extras.wait_select(cursor.connection)
            return True, cursor.fetchone()
        except psycopg2.Error as error:
            self._drop(error)
            return False, None

    def _send(self, statement: Prepared, args: tuple[Any, ...]) -> Any:
        """The cursor the statement was sent on, or None (the pooled path then)."""
        try:
            connection = self._connect()
            if statement.name not in self._prepared:
                self._wait(connection, statement.prepare_sql())
                self._prepared.add(statement.name)
            cursor = connection.cursor()
            cursor.execute(*statement.execute_sql(args))
            return cursor
        except psycopg2.Error as error:
            self._drop(error)
            return None

    def _connect(self) -> Any:
        if self._pid != os.getpid():  # a forked child: the parent's socket, not ours
            self._pid, self._connection, self._prepared = os.getpid(), None, set()
        pooled = autocommit_engine()
        if pooled is not self._engine:  # the ledger's URL changed (app.db.reset())
            self._drop(None)
            self._engine = pooled
        if self._connection is None or self._connection.closed:
            args, kwargs = pooled.dialect.create_connect_args(pooled.url)
            kwargs.update(network_parameters(pooled.url))  # as the pool's connections
            connection = psycopg2.connect(*args, **kwargs, async_=True)
            psycopg2.extras.wait_select(connection)
            self._connection, self._prepared = connection, set()
        return self._connection

    @staticmethod
    def _wait(connection: Any, sql: str) -> None:
        cursor = connection.cursor()
        cursor.execute(sql)
        psycopg2.extras.wait_select(connection)
        cursor.close()

    def _drop(self, error: Exception | None) -> None:
        if error is not None:
            log.info("ledger: the non-blocking connection failed (%s); using the pool", error)
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg2.Error):
                connection.close()


#: This process's non-blocking connection.
OVERLAPPED = Overlapped()
