"""Job type ``sync``: pull a budget's transactions from a source, incrementally.

Usage::

    from tasks import sync

    sync.delay("household", "var/data/bank.csv")                       # a file (or URL)
    sync.delay("household", {"connection": "bank", "table": "bank_tx"})  # a database source
    sync.delay("household", "database://bank/bank_tx")                  # the same, as text
    sync.delay("household", "https://bank.example/export.csv", full_resync=True)

Sources:

- a record file (CSV, JSON lines or XLSX; local path, ``file://`` or http(s) URL), given
  as text or ``{"path": …, "format": …, "cursor_field": …}``; where files and URLs may be
  is confined by :mod:`tasks._confine` (``JOBLEDGER_SOURCE_ROOTS``,
  ``JOBLEDGER_SOURCE_ALLOWED_NETWORKS``);
- a table of a database source the operator configured (``JOBLEDGER_DATABASE_SOURCES``,
  :mod:`tasks._database`), given as ``{"connection": <name>, "table": <table>}`` or the text
  ``database://<name>/<table>``. A payload never carries a database URL or SQL: ``url``
  and ``query`` are refused at ``delay()``, and so are a source, a table or a tenant the
  configuration does not allow. The table is read by one SELECT built here, in a
  read-only transaction with a statement timeout.

Each record has ``id``, ``date`` (ISO), ``payee``, ``amount``, and optionally ``category``,
``memo`` and the cursor field (``cursor_field``, default ``updated_at``; ``null`` turns
incremental reading off). Records are upserted into ``transactions`` on
``(tenant, budget_id, external id)`` in batches, one transaction each (the tenant is the
job's, :attr:`JobContext.tenant`; cursors are kept per tenant too); a record that does not
parse is an item error (the job ends ``partial``).

Incremental: after a complete run the largest cursor value seen is saved per budget and
source; the next run reads only records whose cursor is at least that value (the
boundary records are read again, and the upsert makes that harmless). ``full_resync``
reads everything. A canceled or failed run keeps the batches it committed and does not
move the cursor, so the next run reads them again. Running a sync twice is idempotent:
the second run writes nothing that did not change (``records_written`` counts rows
actually inserted or changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import SQLAlchemyError

from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _database, _store
from tasks._confine import SourceRefused
from tasks._fields import BudgetId, FormatName, Location, format_problem
from tasks._sources import (
    Format,
    SourceUnreadable,
    format_from_name,
    is_http,
    local_path,
    open_source,
    read_records,
)
from tasks._values import excerpt, is_empty, parse_date, parse_decimal, storage_problem

CursorField = Annotated[str, Field(pattern=_database.IDENTIFIER)] | None


class FileSource(JobPayload):
    """A record file: local path, ``file://`` or http(s) URL."""

    kind: Literal["file"] = "file"
    path: Location
    format: Annotated[Format | None, FormatName] = Field(default=None, validate_default=True)
    cursor_field: CursorField = "updated_at"

    @field_validator("format")
    @classmethod
    def _guess_format(cls, value: Format | None, info: ValidationInfo) -> Format:
        path = info.data.get("path")
        if value is not None or path is None:
            return value or "csv"
        guessed = format_from_name(path)
        if guessed is None:
            raise ValueError(format_problem(path))
        return guessed

    def identity(self) -> str:
        """Stable name of the source, for its sync cursor."""
        if is_http(self.path):
            return self.path
        return local_path(self.path).resolve().as_uri()


#: Why a payload may not carry a database URL or SQL (the error of both fields).
NO_URL_OR_SQL = (
    "a job payload never carries a database URL or SQL: name a database source the "
    "operator configured (JOBLEDGER_DATABASE_SOURCES) and one of its tables, "
    '{"connection": <name>, "table": <table>}'
)


class DatabaseSource(JobPayload):
    """A table of a database source the operator configured (:mod:`tasks._database`)."""

    kind: Literal["database"] = "database"
    #: The source's name in ``JOBLEDGER_DATABASE_SOURCES``.
    connection: Annotated[str, Field(pattern=_database.SOURCE_NAME)]
    #: One of the tables that source exposes.
    table: Annotated[str, Field(pattern=_database.TABLE)]
    cursor_field: CursorField = "updated_at"
    # Refused whenever given, with the reason (not only "extra inputs are not permitted").
    url: SkipJsonSchema[None] = Field(default=None, exclude=True)
    query: SkipJsonSchema[None] = Field(default=None, exclude=True)

    @field_validator("url", "query", mode="before")
    @classmethod
    def _never(cls, value: Any) -> None:
        raise ValueError(NO_URL_OR_SQL)

    @field_validator("connection")
    @classmethod
    def _configured(cls, value: str, info: ValidationInfo) -> str:
        """Checked where the payload is made when the tenant is known (``delay()``, the
        API); the worker checks again with the job's own tenant before it connects."""
        _database.source_for(value, tenant=(info.context or {}).get("tenant"))
        return value

    @field_validator("table")
    @classmethod
    def _exposed(cls, value: str, info: ValidationInfo) -> str:
        name = info.data.get("connection")
        if name is not None:
            _database.source_for(name, value, tenant=None)
        return value

    def identity(self) -> str:
        """Stable name of the source, for its sync cursor."""
        return f"database:{self.connection}/{self.table}"


def _source_document(value: Any) -> Any:
    """Text and kind-less objects become a tagged source document: text is a file or URL,
    or ``database://<connection>/<table>``; any other scheme is a database URL, which a
    payload may not carry (refused as ``url``)."""
    if isinstance(value, str):
        text = value.strip()
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme in ("", "file", "http", "https"):
            return {"kind": "file", "path": text}
        if scheme == "database":
            connection, _, table = text.split("://", 1)[1].partition("/")
            return {"kind": "database", "connection": connection, "table": table}
        return {"kind": "database", "url": text}
    if isinstance(value, dict) and "kind" not in value:
        database = {"connection", "url", "query"} & set(value)
        return {"kind": "database" if database else "file", **value}
    return value


SyncSource = Annotated[
    FileSource | DatabaseSource, Field(discriminator="kind"), BeforeValidator(_source_document)
]


class SyncPayload(JobPayload):
    """What ``sync.delay(...)`` takes."""

    budget_id: BudgetId
    source: SyncSource
    full_resync: bool = False
    #: Records upserted per transaction.
    batch_size: int = Field(default=500, ge=1, le=10_000)


@dataclass
class Counts:
    read: int = 0
    written: int = 0
    failed: int = 0
    skipped: int = 0
    batches: int = 0
    #: How far through the source the reading is (0 to 1), when the source can tell.
    fraction: float = 0.0


@job_task("sync", SyncPayload, subject="budget_id", queue="sync")
def sync(job: JobContext, payload: SyncPayload) -> dict[str, Any]:
    """Pull ``payload.budget_id``'s transactions (see the module docstring)."""
    source = payload.source
    key = source.identity()
    field = source.cursor_field
    saved = (
        None
        if payload.full_resync or field is None
        else _store.read_cursor(job.tenant, payload.budget_id, key)
    )
    since = saved["value"] if saved and saved.get("field") == field else None
    job.log(
        f"sync of {payload.budget_id} from {key}: "
        + ("full resync" if since is None else f"records with {field} >= {since!r}")
    )
    counts = Counts()
    newest: Any = None
    batch: list[dict[str, Any]] = []
    records = _records(job, source, since, counts)
    try:
        # closing(): a cancel or failure mid-way releases the source (HTTP stream,
        # database connection) at once, not whenever the generator is collected.
        with contextlib.closing(records):
            for row, record in records:
                job.tick()  # a checkpoint at least every second, database sources too
                counts.read += 1
                if record is None:  # unreadable row, already recorded as an item error
                    counts.failed += 1
                    continue
                if field is not None and since is not None and _older(record.get(field), since):
                    counts.skipped += 1  # a file source: filtered here, not by a query
                    continue
                transaction = _transaction(job, row, record, field)
                if transaction is None:
                    counts.failed += 1
                    continue
                if field is not None and not is_empty(record.get(field)):
                    value = _cursor_value(record[field])
                    newest = value if newest is None or _older(newest, value) else newest
                batch.append(transaction)
                if len(batch) >= payload.batch_size:
                    _commit(job, payload, batch, counts)
                    batch = []
            _commit(job, payload, batch, counts)
    except (SourceUnreadable, SourceRefused) as error:
        raise JobFailed(str(error)) from None
    except SQLAlchemyError as error:
        raise JobFailed(f"cannot read the source database: {_first_line(error)}") from None
    if counts.failed and counts.failed == counts.read - counts.skipped:
        raise JobFailed(f"all {counts.failed} records of the source failed validation")
    if field is not None and newest is not None:
        _store.save_cursor(
            job.tenant, payload.budget_id, key, {"field": field, "value": newest}, job.job_id
        )
    elif field is not None and counts.read > counts.failed:
        job.log(
            f"no record has a {field!r} value: no cursor saved, the next run reads the whole "
            "source again (set cursor_field to the source's change column)",
            level="warning",
        )
    job.log(
        f"done: {counts.read} records read, {counts.written} written, "
        f"{counts.failed} rejected, {counts.skipped} older than the cursor"
    )
    return {
        "records_read": counts.read,
        "records_written": counts.written,
        "records_failed": counts.failed,
        "records_skipped": counts.skipped,
        "cursor": newest if newest is not None else since,
        "full_resync": payload.full_resync,
    }


def _commit(
    job: JobContext, payload: SyncPayload, batch: list[dict[str, Any]], counts: Counts
) -> None:
    # Checkpoint before writing: once a cancel is requested, no further batch lands.
    job.check_canceled()
    if not batch:
        return
    written = _store.upsert_transactions(job.tenant, payload.budget_id, job.job_id, batch)
    counts.written += written
    counts.batches += 1
    job.log(f"batch {counts.batches}: {len(batch)} records, {written} inserted or changed")
    # Files know how far through they are; a database query does not (no count is run
    # on the source just for this), so its progress only carries the message.
    job.progress(99 * counts.fraction, f"{counts.read} records read, {counts.written} written")


def _records(
    job: JobContext, source: FileSource | DatabaseSource, since: Any, counts: Counts
) -> Generator[tuple[int, dict[str, Any] | None], None, None]:
    """``(row number, record)`` of the source; a file row that cannot be read at all is
    recorded as an item error here and comes as ``None``."""
    if isinstance(source, DatabaseSource):
        # The worker's own check, with the job's tenant as the ledger recorded it.
        config = _database.source_for(source.connection, source.table, tenant=job.tenant)
        rows = _database.read_table(
            source.connection, config, source.table, cursor_field=source.cursor_field, since=since
        )
        with contextlib.closing(rows):  # ends the read-only transaction at once on a cancel
            yield from enumerate(rows, start=1)
        return
    assert source.format is not None
    with open_source(source.path) as opened:
        stream = read_records(opened, source.format, tick=job.tick)
        for record in stream:
            if record.values is None:
                job.add_error(f"row {record.row} {record.problem}", row=record.row, field=None)
            counts.fraction = stream.fraction()
            yield record.row, record.values
        job.record_file(
            "in", opened.uri, size=opened.size, sha256=opened.sha256, records=stream.records
        )


def _transaction(
    job: JobContext, row: int, record: dict[str, Any], field: str | None
) -> dict[str, Any] | None:
    """A ``transactions`` row from a source record, or None after recording why not."""
    problems: list[tuple[str, str]] = []

    def take(name: str, parse: Any, required: bool = True) -> Any:
        value = record.get(name)
        if is_empty(value):
            if required:
                problems.append((name, "required value is missing"))
            return None
        try:
            parsed = parse(value)
        except ValueError as error:
            problems.append((name, str(error)))
            return None
        problem = storage_problem(parsed)  # e.g. a NUL, which PostgreSQL text refuses
        if problem is not None:
            problems.append((name, problem))
            return None
        return parsed

    external_id = take("id", lambda v: str(v).strip()[:256])
    booked_on = take("date", parse_date)
    payee = take("payee", lambda v: str(v).strip())
    amount = take("amount", _amount)
    category = take("category", lambda v: str(v).strip()[:128], required=False)
    memo = take("memo", str, required=False)
    normalized = _store.normalize_payee(payee) if payee else None
    if payee and not normalized:
        problems.append(("payee", f"has no letters to match on: {excerpt(payee)}"))
    cursor = record.get(field) if field else None
    if field and not is_empty(cursor):
        # saved as the next run's cursor (jsonb) and as the row's source_cursor (text)
        problem = storage_problem(_cursor_value(cursor))
        if problem is not None:
            problems.append((field, f"cursor value {problem}"))
    for name, message in problems:
        job.add_error(message, row=row, field=name)
    if problems:
        return None
    return {
        "external_id": external_id,
        "booked_on": booked_on,
        "payee": payee,
        "payee_normalized": normalized,
        "amount": amount,
        "category": category,
        "memo": memo,
        "source_cursor": None if is_empty(cursor) else str(_cursor_value(cursor))[:64],
    }


#: Smallest amount too large for ``transactions.amount`` (``numeric(18, 2)``).
AMOUNT_LIMIT = Decimal(10) ** 16


def _amount(value: Any) -> Decimal:
    """An amount in cents, or :class:`ValueError` saying why it cannot be one.

    The range is checked before rounding: ``Decimal("1e999999").quantize(...)`` raises
    ``InvalidOperation`` (an ``ArithmeticError``, not a ``ValueError``), and a larger
    amount would fail the batch's insert as out of range.
    """
    number = parse_decimal(value)
    if abs(number) < AMOUNT_LIMIT:
        number = number.quantize(Decimal("0.01"))
        if abs(number) < AMOUNT_LIMIT:
            return number
    raise ValueError(
        f"out of range: an amount must be below 10^16 in absolute value, got {excerpt(value)}"
    )


def _cursor_value(value: Any) -> Any:
    """A cursor value as JSON (timestamps and dates as ISO text, decimals as numbers)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _order(value: Any) -> tuple[int, float, str]:
    """Sort key of cursor values: numbers (also numeric text) by value, others as text."""
    value = _cursor_value(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    with contextlib.suppress(ValueError, TypeError):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _older(value: Any, than: Any) -> bool:
    """True when cursor ``value`` comes before ``than`` (missing values never do)."""
    if is_empty(value):
        return False
    return _order(value) < _order(than)


#: Characters of a source database's error message a failure reason keeps (such a
#: message may quote a value of the source: ``invalid input syntax for type …: "…"``).
MAX_DATABASE_ERROR = 160


def _first_line(error: SQLAlchemyError) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    line = text[0] if text else "no message"
    if len(line) > MAX_DATABASE_ERROR:
        line = line[:MAX_DATABASE_ERROR] + "…"
    return f"{type(cause).__name__}: {line}"
