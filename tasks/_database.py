"""Named database sources: the only way a job reaches a database other than the ledger.

A job payload never carries a database URL or SQL. The operator names each database a
``sync`` may read in ``JOBLEDGER_DATABASE_SOURCES`` (JSON), with the tables it exposes
and the tenants that may use it::

    JOBLEDGER_DATABASE_SOURCES='{
      "bank": {"url": "postgresql://bank_reader@bankdb/bank",
               "tables": ["bank_tx", "cards.card_tx"],
               "tenants": ["acme"],                 # or ["*"]: every tenant
               "statement_timeout": 30}             # seconds per round trip (default 30)
    }'

and a payload names one of them and one of its tables::

    sync.delay("household", {"connection": "bank", "table": "bank_tx"})

Usage here::

    config = source_for("bank", "bank_tx", tenant="acme")    # or SourceRefused
    for row in read_table(config, "bank_tx", cursor_field="updated_at", since=None): ...

The rows are read by one SELECT built with SQLAlchemy Core (the table and cursor column
quoted by the dialect, the cursor value bound), in a read-only transaction:

- PostgreSQL: the session starts with ``default_transaction_read_only=on`` and the
  ``statement_timeout`` (libpq ``options``), and the transaction is ``BEGIN READ ONLY``
  (psycopg2's ``readonly``). The SELECT and each fetch of its rows is one statement.
- SQLite: ``PRAGMA query_only``, and a progress handler that interrupts a statement or
  fetch that runs past the timeout.

Other dialects are refused: nothing here confines them.

A source that is the ledger's own database is refused unless its entry says
``"ledger_database": true``: on its URL (same file; same host, port and database name),
and on PostgreSQL again on the live connection (same database name and server start
time), so a host alias cannot slip through. Read-only or not, give a source a database
role of its own with no rights on the ledger's tables: the confinement here is the
second line, the role the first.

The settings are read where the payload is validated (``delay()``, the API: a name,
table or tenant it does not allow is refused there, naming the field) and again by the
worker before it connects (the worker's word is final: it checks the job's tenant as the
ledger recorded it, not as a message claims it). Configure producers, the API and the
workers alike.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app import db
from app.config import normalize_database_url, settings
from tasks._confine import SourceRefused
from tasks._settings import Sources

#: A source name: what payloads say (letters, digits, ``_ . -``).
SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
#: A column name a database source may use.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
#: A table a source exposes: ``table`` or ``schema.table``.
TABLE = r"^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$"
#: Dialects whose read-only transaction and timeout this module knows how to set.
DIALECTS = ("postgresql", "sqlite")
#: Rows fetched per round trip; each fetch is bounded by the statement timeout.
FETCH = 1000
#: The setting, as error messages name it.
SETTING = "JOBLEDGER_DATABASE_SOURCES"


class DatabaseSourceConfig(BaseModel):
    """One operator-configured database source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: SQLAlchemy URL. It stays in the settings: no payload, log or ledger row holds it.
    url: str
    #: The tables (``table`` or ``schema.table``) a payload may name.
    tables: Annotated[list[Annotated[str, Field(pattern=TABLE)]], Field(min_length=1)]
    #: Tenants that may use the source; ``"*"`` for every tenant.
    tenants: Annotated[list[str], Field(min_length=1)]
    #: Seconds each round trip (the SELECT, each fetch) may take.
    statement_timeout: float = Field(default=30, gt=0, le=3600)
    #: Allow the source to be the ledger's own database (read-only, but think twice).
    ledger_database: bool = False

    def url_object(self) -> URL:
        return make_url(normalize_database_url(self.url))


class DatabaseSourcesMisconfigured(ValueError):
    """``JOBLEDGER_DATABASE_SOURCES`` cannot be read; ``str()`` says what to fix."""


def configured() -> dict[str, DatabaseSourceConfig]:
    """Every configured source by name (empty by default).

    Raises:
        DatabaseSourcesMisconfigured: the setting is not valid JSON of the expected shape.
    """
    return _parse(settings.of(Sources).database_sources)


@functools.lru_cache(maxsize=4)
def _parse(text: str) -> dict[str, DatabaseSourceConfig]:
    if not text.strip():
        return {}
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatabaseSourcesMisconfigured(f"{SETTING} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise DatabaseSourcesMisconfigured(f"{SETTING} must be a JSON object: name -> source")
    sources: dict[str, DatabaseSourceConfig] = {}
    for name, entry in document.items():
        try:
            config = DatabaseSourceConfig.model_validate(entry)
            url = config.url_object()
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors()
            )
            raise DatabaseSourcesMisconfigured(f"{SETTING}[{name!r}]: {problems}") from None
        except ArgumentError:
            raise DatabaseSourcesMisconfigured(
                f"{SETTING}[{name!r}].url is not a SQLAlchemy database URL"
            ) from None
        if not isinstance(name, str) or not _matches(SOURCE_NAME, name):
            raise DatabaseSourcesMisconfigured(
                f"{SETTING}: {name!r} is not a source name (letters, digits, _ . -)"
            )
        if url.get_backend_name() not in DIALECTS:
            raise DatabaseSourcesMisconfigured(
                f"{SETTING}[{name!r}]: {url.get_backend_name()} sources are not supported "
                f"(only {', '.join(DIALECTS)}: their read-only mode and timeout are known)"
            )
        sources[name] = config
    return sources


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def source_for(name: str, table: str | None = None, *, tenant: str | None) -> DatabaseSourceConfig:
    """The configured source ``name`` if ``tenant`` may use it (and it exposes ``table``).

    ``tenant=None`` skips the tenant check (a producer validating without a tenant; the
    worker always checks with the job's own).

    Raises:
        SourceRefused: no such source for this tenant, a table it does not expose, or
            the ledger's own database without ``ledger_database``.
        DatabaseSourcesMisconfigured: the setting cannot be read.
    """
    config = configured().get(name)
    if config is None or (tenant is not None and not _grants(config, tenant)):
        # The same answer for "no such source" and "not yours": a tenant cannot learn
        # which sources other tenants have.
        whose = "" if tenant is None else f" for tenant {tenant!r}"
        raise SourceRefused(
            f"no database source named {name!r} is configured{whose}: the operator names "
            f"each one in {SETTING}; a payload cannot carry a database URL or SQL"
        )
    if not config.ledger_database and _is_ledger_url(config.url_object()):
        raise SourceRefused(
            f"database source {name!r} is the ledger's own database, which a job reaches "
            "only through the ledger's code (the operator may allow it with "
            '"ledger_database": true)'
        )
    if table is not None and table not in config.tables:
        raise SourceRefused(
            f"database source {name!r} does not expose a table {table!r}: "
            "the operator lists the tables of each source"
        )
    return config


def _grants(config: DatabaseSourceConfig, tenant: str) -> bool:
    return "*" in config.tenants or tenant in config.tenants


_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1"}


def _is_ledger_url(url: URL) -> bool:
    """Whether ``url`` names the ledger's database (the URLs compared; aliases of a host
    are caught later, on the live connection)."""
    ledger = make_url(settings().database_url)
    if url.get_backend_name() != ledger.get_backend_name():
        return False
    if url.get_backend_name() == "sqlite":
        return _sqlite_file(url) == _sqlite_file(ledger)
    local = {url.host, ledger.host} <= _LOCAL_HOSTS
    return (
        (local or url.host == ledger.host)
        and (url.port or 5432) == (ledger.port or 5432)
        and url.database == ledger.database
    )


def _sqlite_file(url: URL) -> str | None:
    name = url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return name
    return str(Path(name).resolve())


def read_table(
    name: str,
    config: DatabaseSourceConfig,
    table: str,
    *,
    cursor_field: str | None,
    since: Any,
) -> Generator[dict[str, Any], None, None]:
    """The rows of ``table`` (from the cursor on, in cursor order), read-only.

    Raises:
        SourceRefused: the live connection is the ledger's database.
        sqlalchemy.exc.SQLAlchemyError: the source failed (unreachable, timeout, a write
            attempted inside the read-only transaction…).
    """
    engine = _engine(config)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(postgresql_readonly=True)
            with connection.begin():
                if not config.ledger_database and _is_ledger_connection(connection):
                    raise SourceRefused(
                        f"database source {name!r} is the ledger's own database (reached "
                        "under another name), which a job reaches only through the "
                        "ledger's code"
                    )
                clock = _Deadline(config.statement_timeout)
                _watch(connection, clock)
                clock.restart()
                result = connection.execution_options(stream_results=True).execute(
                    select_rows(table, cursor_field, since)
                )
                while True:
                    clock.restart()
                    rows = result.fetchmany(FETCH)
                    if not rows:
                        break
                    for row in rows:
                        yield dict(row._mapping)
    finally:
        engine.dispose()


def select_rows(table: str, cursor_field: str | None, since: Any) -> sa.Select[Any]:
    """``SELECT * FROM table [WHERE cursor >= :since ORDER BY cursor]``: identifiers are
    quoted by the dialect, ``since`` is a bound value; one statement, no text SQL."""
    columns: list[sa.ColumnClause[Any]] = [sa.column(cursor_field)] if cursor_field else []
    schema, _, relation_name = table.rpartition(".")
    relation = sa.table(relation_name, *columns, schema=schema or None)
    query: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(relation)
    if cursor_field:
        if since is not None:
            # Untyped: the database reads the value as the cursor column's own type (a
            # timestamp compared with ISO text), not as VARCHAR.
            query = query.where(
                relation.c[cursor_field] >= sa.bindparam("since", since, type_=sa.types.NullType())
            )
        query = query.order_by(relation.c[cursor_field])
    return query


def _engine(config: DatabaseSourceConfig) -> sa.Engine:
    url = config.url_object()
    if url.get_backend_name() == "postgresql":
        milliseconds = max(1, int(config.statement_timeout * 1000))
        return sa.create_engine(
            url,
            poolclass=sa.NullPool,
            connect_args={
                "options": (
                    f"-c default_transaction_read_only=on -c statement_timeout={milliseconds}"
                )
            },
        )
    engine = sa.create_engine(url, poolclass=sa.NullPool)

    @sa.event.listens_for(engine, "connect")
    def _query_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    return engine


class _Deadline:
    """When the current round trip must be over."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def restart(self) -> None:
        self.at = time.monotonic() + self.seconds

    def passed(self) -> bool:
        return time.monotonic() > self.at


def _watch(connection: sa.Connection, clock: _Deadline) -> None:
    """SQLite has no statement timeout: a progress handler interrupts a round trip that
    runs past the clock (PostgreSQL's own ``statement_timeout`` does it there)."""
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    assert raw is not None
    raw.set_progress_handler(lambda: 1 if clock.passed() else 0, 10_000)


#: The identity of a PostgreSQL database: its name and its server's start time.
_IDENTITY = sa.select(sa.func.current_database(), sa.func.pg_postmaster_start_time())


def _is_ledger_connection(connection: sa.Connection) -> bool:
    """Whether a live PostgreSQL source connection reached the ledger's own database."""
    ledger = db.engine()
    if connection.dialect.name != "postgresql" or ledger.dialect.name != "postgresql":
        return False
    with ledger.connect() as ledger_connection:
        own = tuple(ledger_connection.execute(_IDENTITY).one())
    return tuple(connection.execute(_IDENTITY).one()) == own
