"""Job type ``import``: load a CSV, XLSX or JSON-lines file into a dataset, in batches.

Usage::

    from tasks import import_data

    import_data.delay(source="/data/sales.csv", dataset="sales")
    import_data.delay(
        source="https://example.com/sales.jsonl",
        dataset="sales",
        key="order_id",                                   # re-imports upsert by order_id
        columns={"order_id": "int", "amount": "decimal", "note": "str?"},
        tenant="acme",
    )

- ``format`` (csv, xlsx, jsonl) defaults to what the file name ends with; ``delay()``
  refuses a payload whose format it cannot tell, or an unknown one.
- ``columns`` declares typed columns: each listed column must be present and parse
  (``"int?"`` allows it empty). Other columns are stored as read.
- A row that fails (wrong number of fields, bad JSON, a value that does not parse, an
  empty key) becomes a structured item error ``{"row", "field", "message"}`` and the
  import goes on: the job ends ``partial``. It ends ``failed`` when every row failed, or
  when the source cannot be read (not found, unreachable, not the format it claims).
- The file is recorded in ``job_files`` (in, bytes, sha256, records); the result is
  ``{"records_read", "records_imported", "records_failed"}``.

What a stopped import leaves: every batch's transaction also notes in the job's metadata
``rows_committed`` and ``last_committed_row`` (the source row of the last row in), so a
failed, canceled or killed import says exactly which rows are in (see docs/tasks.md).

Batches and cancel: every batch of ``batch_size`` good rows is committed on its own, after
a cooperative cancel check. A batch also holds at most
``JOBLEDGER_IMPORT_MAX_BATCH_CELLS`` values (see :func:`fits`), so its memory and a
cancel's wait do not grow with the payload. Canceling an import mid-way therefore **keeps
the batches already committed** and writes nothing after the checkpoint that saw the
cancel; the job ends ``canceled`` and its log says how many rows were kept. Running the
import again completes the dataset: with ``key`` the rows are upserted (no duplicates);
without a key, a new import job appends, while the same job delivered again (a redelivery
after a lost worker, or a manual retry of the canceled job) first removes the unkeyed rows
it wrote before, so it never doubles them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from sqlalchemy.exc import DataError

from app.config import settings
from app.exceptions import JobCanceled, JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import DatasetName, FormatName, Location, Tenant, format_problem
from tasks._settings import RecordLimits
from tasks._sources import (
    Format,
    Record,
    SourceUnreadable,
    format_from_name,
    open_source,
    read_records,
)
from tasks._values import ColumnType, is_empty, parse, storage_problem

#: Longest row key kept (the ``dataset_rows.row_key`` column).
MAX_KEY = 512


class ImportPayload(JobPayload):
    """What ``import_data.delay(...)`` takes."""

    #: Local path, file:// URL or http(s) URL of the file.
    source: Location
    #: Dataset the rows go to (created on first import).
    dataset: DatasetName
    #: The job's tenant, whose dataset this is: filled in by ``delay()`` from
    #: ``apply_async(tenant=…)`` when left out; naming another tenant is refused.
    tenant: Tenant = "default"
    #: csv, xlsx or jsonl; guessed from the file name when not given.
    format: Annotated[Format | None, FormatName] = Field(default=None, validate_default=True)
    #: Column whose value identifies a row: re-importing the same key updates the row.
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    #: Typed columns (``int``, ``float``, ``decimal``, ``date``, ``bool``, ``str``; ``?``
    #: suffix = may be empty).
    columns: dict[str, ColumnType] = Field(default_factory=dict)
    #: Good rows committed per transaction.
    batch_size: int = Field(default=1000, ge=1, le=50_000)

    @field_validator("format")
    @classmethod
    def _guess_format(cls, value: Format | None, info: ValidationInfo) -> Format:
        return guessed_format(value, info.data.get("source"))


def guessed_format(value: Format | None, location: str | None) -> Format:
    """``value``, else the format ``location``'s name ends with (for a payload validator;
    ``ValueError`` when it cannot be told)."""
    if value is not None:
        return value
    if location is None:  # the location itself was refused; that error says enough
        return "csv"
    guessed = format_from_name(location)
    if guessed is None:
        raise ValueError(format_problem(location))
    return guessed


@dataclass
class Batch:
    """Good rows waiting to be committed (and their row numbers), and the counts so far."""

    rows: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    #: Values (columns of each row) in ``rows``.
    cells: int = 0
    number: int = 0
    read: int = 0
    imported: int = 0
    failed: int = 0
    #: Row number of the last row committed (every good row up to it is in the dataset).
    last_row: int | None = None

    def kept(self) -> str:
        """What a stopped import leaves in the dataset, for its log and failure reason."""
        if not self.imported:
            return "no rows were committed"
        return (
            f"the {self.imported} rows committed so far (every good row up to row "
            f"{self.last_row}) are kept"
        )


@job_task("import", ImportPayload, subject="dataset", queue="import")
def import_data(job: JobContext, payload: ImportPayload) -> dict[str, int]:
    """Import ``payload.source`` into ``payload.dataset`` (see the module docstring)."""
    return import_records(job, payload)


def import_records(
    job: JobContext, payload: ImportPayload, roots: tuple[Path, ...] | None = None
) -> dict[str, int]:
    """The body of an import, for every job type that imports a file (``interface_run``
    too): ``roots`` are the folders the file may be in (default
    ``JOBLEDGER_SOURCE_ROOTS``). Returns the import's result."""
    assert payload.format is not None  # filled in by the payload model
    counts = Batch()
    writer = _DatasetWriter(job, payload)
    max_cells = settings.of(RecordLimits).import_max_batch_cells
    job.log(f"importing {payload.format} from {payload.source} into {payload.dataset}")
    try:
        with open_source(payload.source, roots) as source:
            stream = read_records(source, payload.format, tick=job.tick)
            for record in stream:
                counts.read += 1
                row = _validated(job, record, payload)
                if row is None:
                    counts.failed += 1
                    continue
                width = len(row[1])
                if not fits(len(counts.rows), counts.cells, width, payload.batch_size, max_cells):
                    writer.commit(counts, stream.fraction())
                counts.rows.append(row)
                counts.numbers.append(record.row)
                counts.cells += width
                if len(counts.rows) >= payload.batch_size or counts.cells >= max_cells:
                    writer.commit(counts, stream.fraction())  # full: no need to wait for a row
            writer.commit(counts, stream.fraction())
            job.record_file(
                "in", source.uri, size=source.size, sha256=source.sha256, records=stream.records
            )
    except SourceUnreadable as error:
        raise JobFailed(f"{error}; {counts.kept()}") from None
    except JobCanceled:
        job.log(f"canceled after {counts.number} committed batches: {counts.kept()}", "warning")
        raise
    except Exception:
        job.log(f"stopped by an error after {counts.number} committed batches: {counts.kept()}")
        raise
    result = {
        "records_read": counts.read,
        "records_imported": counts.imported,
        "records_failed": counts.failed,
    }
    if counts.read and not counts.imported:
        first = job.errors[0] if job.errors else {}
        raise JobFailed(
            f"all {counts.read} rows failed validation; first: row {first.get('row')}"
            f"{_field_label(first)}: {first.get('message')}",
            errors=job.errors,
        )
    job.log(f"done: {counts.read} rows read, {counts.imported} imported, {counts.failed} rejected")
    return result


def fits(rows: int, cells: int, width: int, batch_size: int, max_cells: int) -> bool:
    """Whether a row of ``width`` values may join a batch of ``rows`` rows holding
    ``cells`` values, or the batch must be committed first. (A batch that is full, by
    rows or values, is committed at once, without waiting for the next row.)

    A batch is bounded by rows (``batch_size``, the payload's) and by values
    (``max_cells``, the worker's): rows of ``c`` columns make batches of
    ``min(batch_size, max_cells // c)`` rows, at least one (a row wider than the bound
    goes alone). Counting values rather than assuming one width keeps the bound exact
    for JSON lines of varying keys.
    """
    if rows == 0:
        return True
    return rows < batch_size and cells + width <= max_cells


class _DatasetWriter:
    """Commits batches to the dataset, opening it (and merging new columns) as needed."""

    def __init__(self, job: JobContext, payload: ImportPayload) -> None:
        self.job = job
        self.payload = payload
        self.dataset_id: int | None = None
        self.columns: list[str] = []
        #: The job's tenant; the payload's ``tenant`` must agree with it.
        self.tenant = job.tenant_of(payload.tenant)

    def commit(self, counts: Batch, fraction: float) -> None:
        # Checkpoint before writing: once a cancel is requested, no further batch lands.
        self.job.check_canceled()
        if counts.rows:
            self._open(counts.rows)
            try:
                self._write(counts, counts.rows, counts.numbers)
            except DataError:
                self._write_one_by_one(counts)
            counts.number += 1
            self.job.log(
                f"batch {counts.number}: {len(counts.rows)} rows committed "
                f"({counts.imported} imported, {counts.failed} rejected so far)"
            )
            counts.rows, counts.numbers, counts.cells = [], [], 0
        self.job.progress(99 * fraction, f"{counts.read} rows read, {counts.imported} imported")

    def _write(
        self, counts: Batch, rows: list[tuple[str | None, dict[str, Any]]], numbers: list[int]
    ) -> None:
        """Commit ``rows`` and, in the same transaction, note in the job's metadata which
        rows are in (``rows_committed``, ``last_committed_row``): exact even when the
        worker dies right after."""
        assert self.dataset_id is not None
        imported = counts.imported + len(rows)
        note = self.job.noting(rows_committed=imported, last_committed_row=numbers[-1])
        _store.write_rows(self.tenant, self.dataset_id, self.job.job_id, rows, also=note)
        counts.imported, counts.last_row = imported, numbers[-1]

    def _write_one_by_one(self, counts: Batch) -> None:
        """PostgreSQL refused the batch for a value no check foresaw: write its rows one
        at a time, so only the refused ones become item errors."""
        for number, row in zip(counts.numbers, counts.rows, strict=True):
            try:
                self._write(counts, [row], [number])
            except DataError as error:
                counts.failed += 1
                self.job.add_error(
                    f"PostgreSQL refused a value of this row: {_first_line(error)}",
                    row=number,
                    field=None,
                )

    def _open(self, rows: list[tuple[str | None, dict[str, Any]]]) -> None:
        new = [c for _, data in rows for c in data if c not in self.columns]
        if self.dataset_id is not None and not new:
            return
        self.columns += list(dict.fromkeys(new))
        first = self.dataset_id is None
        self.dataset_id = _store.open_dataset(
            self.tenant, self.payload.dataset, self.columns, self.payload.key
        )
        if first and self.payload.key is None:
            removed = _store.forget_job_rows(self.tenant, self.dataset_id, self.job.job_id)
            if removed:
                self.job.log(f"removed {removed} rows an earlier run of this job had imported")


def _validated(
    job: JobContext, record: Record, payload: ImportPayload
) -> tuple[str | None, dict[str, Any]] | None:
    """``(key, data)`` of a good record; None after recording why it is not."""
    if record.values is None:
        job.add_error(f"row {record.row} {record.problem}", row=record.row, field=None)
        return None
    data = dict(record.values)
    problems: list[tuple[str, str]] = []
    for column, column_type in payload.columns.items():
        try:
            data[column] = parse(column_type, data.get(column))
        except ValueError as error:
            problems.append((column, str(error)))
    key: str | None = None
    if payload.key is not None:
        value = data.get(payload.key)
        if is_empty(value):
            problems.append((payload.key, "the key column is empty or missing"))
        else:
            key = str(value)
            if len(key) > MAX_KEY:
                problems.append((payload.key, f"key longer than {MAX_KEY} characters"))
    failed = {column for column, _ in problems}
    for column, value in data.items():
        problem = None if column in failed else storage_problem({column: value})
        if problem is not None:
            problems.append((column, problem))
    for column, message in problems:
        job.add_error(message, row=record.row, field=column)
    return None if problems else (key, data)


def _field_label(error: dict[str, Any]) -> str:
    return f" field {error['field']!r}" if error.get("field") else ""


def _first_line(error: DataError) -> str:
    """The database's own message, without the statement and parameters (row data)."""
    lines = str(getattr(error, "orig", None) or "refused").strip().splitlines()
    return lines[0] if lines else "refused"
