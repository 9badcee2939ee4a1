"""The ledger's engine, one per process, and the one way to run a ledger transaction.

Fork safety: prefork children inherit the parent's pool;
:func:`forget_inherited_connections` runs in ``worker_process_init`` and drops them
without closing the parent's sockets (SQLAlchemy's documented recipe).

Pools are small (workers are processes). The engine of reads and of the rarer
transitions pings a connection before handing it out (``pool_pre_ping``): after the
database dropped its connections (a restart, ``pg_terminate_backend``) the next read gets
a fresh one instead of failing, which is what lets the API answer the next request
rather than a 500. The autocommit engine of the per-job hot path does not ping (a round
trip per statement would cost a third of it): a dropped connection shows up as a
disconnect error on first use, the pool is invalidated, and :func:`in_transaction` /
:func:`on_driver_cursor` run the statement again. Every ledger transaction is a guarded,
idempotent statement set, so running it twice is safe.

A Celery pool process runs one job at a time, and each job takes its hot statements
(start, outcome) on the autocommit engine. There the connection is not taken from the
pool and given back around every statement: :func:`hold_hot_connection` (called in
``worker_process_init``) makes the process keep it checked out between statements, in
the thread that runs the jobs (other threads take the pool as before). The process holds
no more connections than before (the one it would otherwise leave idle in the pool);
the pool's checkout and checkin were measured at about a third of the CPU of the
statement's own round trip in a loaded worker. The held connection goes back to the pool
every :data:`HOLD_SECONDS` (so ``pool_recycle`` still applies to it) and at once on an
error, invalidated when the error says the server connection is lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import functions

from app.config import settings
from app.exceptions import LedgerUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Seconds a SQLite write waits for the one writer before it (SQLite's busy timeout).
SQLITE_BUSY_SECONDS = 30

_engine: Engine | None = None
_autocommit: Engine | None = None

#: Seconds a pool process keeps its hot connection checked out before it gives it back
#: to the pool and takes one again (:func:`hold_hot_connection`).
HOLD_SECONDS = 60.0


class _Held:
    """The autocommit connection one thread of this process keeps between statements."""

    def __init__(self) -> None:
        self.thread: int | None = None  # the thread that holds; None: nobody does
        self.connection: Any = None  # a pooled (proxied) DBAPI connection
        self.since = 0.0

    def take(self, pooled: Engine) -> tuple[Any, bool]:
        """A connection for one statement, and whether it is the held one."""
        if self.thread is None or threading.get_ident() != self.thread:
            return pooled.raw_connection(), False
        if self.connection is not None and time.monotonic() - self.since < HOLD_SECONDS:
            return self.connection, True
        self.release()  # held long enough: back to the pool (recycled there if due)
        self.connection, self.since = pooled.raw_connection(), time.monotonic()
        return self.connection, True

    def release(self) -> None:
        """Give the held connection back to the pool (a no-op once invalidated)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


_held = _Held()


def engine() -> Engine:
    """This process's engine for ``JOBLEDGER_DATABASE_URL``, created on first use."""
    global _engine
    if _engine is None:
        _engine = _create(settings().database_url)
    return _engine


def ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder (the default lives under ``./var``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _create(url: str, *, pre_ping: bool = True, **options: Any) -> Engine:
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        created = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
        event.listen(created, "connect", _sqlite_pragmas)
        return created
    return create_engine(
        url,
        pool_size=settings().db_pool_size,
        max_overflow=2,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args=network_parameters(url),
        **options,
    )


#: The drivers that take libpq's connection parameters.
_LIBPQ_DRIVERS = frozenset({"psycopg2", "psycopg"})


def network_parameters(url: str | URL, seconds: float | None = None) -> dict[str, int]:
    """The libpq parameters that bound a silent network to about ``seconds``
    (``JOBLEDGER_DB_NETWORK_TIMEOUT``) on a connection to ``url``; none for another
    database or driver, or when ``seconds`` is 0.

    - ``connect_timeout``: a connection attempt that gets no answer;
    - ``tcp_user_timeout``: data sent and not acknowledged (a statement, its commit, a
      pool's pre-ping into a dead path) — the kernel then closes the socket and the
      driver raises, instead of retransmitting for about 15 minutes;
    - TCP keepalives (``keepalives_idle`` a third of it, then 3 probes a ninth apart): a
      connection waiting for an answer that will never come, with nothing of its own
      unacknowledged, is found dead too.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() not in _LIBPQ_DRIVERS:
        return {}
    limit = settings().db_network_timeout if seconds is None else seconds
    if limit <= 0:
        return {}
    whole = max(1, math.ceil(limit))
    return {
        "connect_timeout": whole,
        "tcp_user_timeout": max(1, round(limit * 1000)),
        "keepalives": 1,
        "keepalives_idle": max(1, whole // 3),
        "keepalives_interval": max(1, whole // 9),
        "keepalives_count": 3,
    }


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    # Readers and the one writer do not block each other (a job streaming rows while it
    # writes its progress); writers still take turns, waiting up to SQLITE_BUSY_SECONDS.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
    # the duration arithmetic of the trend rollups, the same Python code as elsewhere
    # (SQLite may be built without math functions; app.ledger.rules.durations says why)
    from app.ledger.rules import durations

    register = dbapi_connection.create_function  # type: ignore[attr-defined]
    register("jobledger_duration_bucket", 1, durations.sql_duration_bucket, deterministic=True)
    register("jobledger_seconds_between", 2, durations.sql_seconds_between, deterministic=True)


@compiles(functions.now, "sqlite")
def _sqlite_now(_element: functions.now, _compiler: object, **_kw: object) -> str:
    """``now()`` on SQLite with milliseconds, in SQLAlchemy's storage format.

    SQLite's ``CURRENT_TIMESTAMP`` has whole seconds: a job queued, started and finished
    within one second showed three equal times, and ordering by them said nothing. This
    is SQLite's clock (one reading per statement, like PostgreSQL's per transaction), as
    ``YYYY-MM-DD HH:MM:SS.ffffff``, the text SQLAlchemy stores a Python datetime as, so
    both compare as text in the right order. It applies to every ``func.now()``,
    statements and ``server_default`` alike (migrations made after this; the defaults of
    an older SQLite file keep whole seconds, which only ever rounds down).
    """
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


def autocommit_engine() -> Engine:
    """An engine whose connections commit each statement on its own (PostgreSQL).

    The hot transitions are single statements (data-modifying CTEs): run in autocommit
    they cost one round trip, where a transaction adds a BEGIN and a COMMIT. It has a
    pool of its own so that switching isolation levels never costs a round trip.

    A connection goes back to this pool as it is, without the rollback SQLAlchemy's pools
    do on checkin (``pool_reset_on_return=None``, meant for autocommit connections): every
    statement ends its own transaction, so there is nothing to roll back, and the call
    was a third of the checkout and checkin each statement pays (6 of 20 µs, measured).
    """
    global _autocommit
    if _autocommit is None:
        # set once per connection at connect, not at every checkout and checkin
        _autocommit = _create(
            settings().database_url,
            pre_ping=False,
            isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None,
        )
    return _autocommit


def hold_hot_connection() -> None:
    """Keep the autocommit connection of :func:`on_driver_cursor` checked out between
    statements in the calling thread (a Celery pool process's, which runs its jobs one at
    a time): see the module docstring."""
    _held.release()
    _held.thread = threading.get_ident()


def release_hot_connection() -> None:
    """Give the held connection back to the pool and stop holding one."""
    _held.release()
    _held.thread = None


def forget_inherited_connections() -> None:
    """Drop pooled connections inherited through fork (call in each new child)."""
    _held.connection = None  # the parent's, if it held one: never closed from here
    _held.thread = None
    for inherited in (_engine, _autocommit):
        if inherited is not None:
            inherited.dispose(close=False)


def reset() -> None:
    """Close this process's engines; the next call reads the settings again."""
    global _engine, _autocommit
    _held.release()  # still held by its thread, if one holds: it takes a new one next
    for created in (_engine, _autocommit):
        if created is not None:
            created.dispose()
    _engine = _autocommit = None


def in_transaction(work: Callable[[Connection], T], what: str) -> T:
    """Run ``work`` in one transaction, again on a lost connection, for up to
    ``JOBLEDGER_WRITE_RETRY_SECONDS``; then raise :class:`LedgerUnavailable`."""
    return _retrying(lambda: _in_transaction(work), what)


def on_driver_cursor(work: Callable[[Any, dict[str, Any]], T], what: str) -> T:
    """Run ``work(cursor, info)`` on a driver (psycopg2) cursor of an autocommit pooled
    connection, with the same retries as :func:`in_transaction`.

    The hot transitions need no more than that: each is one statement, atomic on its own.
    ``info`` lives as long as the server connection does (a reconnect starts a new one),
    which is where :mod:`app.ledger.engines.prepared` remembers what it prepared there. Driver
    errors are raised as SQLAlchemy's, so retries and :class:`LedgerUnavailable` behave
    as for every other ledger write.
    """
    pooled = autocommit_engine()

    def attempt() -> T:
        connection, held, done = None, False, False
        try:
            # raises the driver's error, unwrapped
            connection, held = _held.take(pooled)
            cursor = connection.cursor()
            try:
                result = work(cursor, connection.info)
            finally:
                cursor.close()
            done = True
            return result
        except pooled.dialect.loaded_dbapi.Error as error:
            lost = connection is None or pooled.dialect.is_disconnect(
                error, connection.dbapi_connection, None
            )
            if lost and connection is not None:
                connection.invalidate(error)
            raise DBAPIError.instance(
                None, None, error, pooled.dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from error
        finally:
            if held and not done:
                _held.release()  # after an error: the next statement takes a fresh one
            elif connection is not None and not held:
                connection.close()  # back to the pool (a no-op once invalidated)

    return _retrying(attempt, what)


def _in_transaction(work: Callable[[Connection], T]) -> T:
    with engine().begin() as connection:
        return work(connection)


def _retrying(attempt: Callable[[], T], what: str) -> T:
    started = time.monotonic()
    deadline = None  # started + JOBLEDGER_WRITE_RETRY_SECONDS, read at the first failure
    delay = 0.05
    retries = 0
    while True:
        try:
            done = attempt()
        except (OperationalError, DBAPIError) as error:
            if not _is_transient(error):
                raise
            if deadline is None:
                deadline = started + settings().write_retry_seconds
            if time.monotonic() + delay > deadline:
                _uncounted.keep(retries)  # counted with the next retried write
                raise LedgerUnavailable(what, error) from error
            log.warning("ledger write of %s failed (%s); trying again in %.2fs", what, error, delay)
            time.sleep(delay)  # back-off before reconnecting, not a stand-in for work
            delay = min(delay * 2, 2.0)
            retries += 1
            continue
        if retries:
            _count_retries(retries)
        return done


class _Uncounted:
    """Write retries not in the ledger's counter yet: those of writes that gave up (the
    ledger was unreachable) and those whose count could not be written. The next count
    takes them all; a lock, because the API counts from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retries = 0

    def keep(self, retries: int) -> None:
        with self._lock:
            self._retries += retries

    def take(self) -> int:
        with self._lock:
            taken, self._retries = self._retries, 0
            return taken


_uncounted = _Uncounted()


def _count_retries(retries: int) -> None:
    """Add a write's retries (and the uncounted ones before it) to the ledger's
    ``write_retries`` counter, which ``/metrics`` reads: kept in the ledger, it survives
    restarts. Best effort and off the normal path (only after a retry): a failure here
    is logged and the retries are kept for the next count, never raised into the write
    that succeeded."""
    from app.ledger.engines.counter_queries import WRITE_RETRIES, add_to_counter

    amount = retries + _uncounted.take()
    try:
        with engine().begin() as connection:
            connection.execute(add_to_counter(WRITE_RETRIES, amount))
    except (OperationalError, DBAPIError) as error:
        log.warning("could not count %d ledger write retries: %s", amount, error)
        _uncounted.keep(amount)


def _is_transient(error: DBAPIError) -> bool:
    return bool(error.connection_invalidated) or isinstance(error, OperationalError)
