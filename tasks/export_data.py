"""Job type ``export``: write a dataset, or a ledger table/view, to CSV, XLSX or JSON lines.

Usage::

    from tasks import export_data

    export_data.delay(dataset="sales")                                 # CSV
    export_data.delay(dataset="sales", format="xlsx", tenant="acme")
    export_data.delay(dataset="ledger:report_daily_history", format="jsonl")

The file goes to ``JOBLEDGER_EXPORT_DIR`` (default ``var/exports``) as
``<tenant>/<dataset>-<job id>.<format>``; a ``ledger:`` name is written as
``ledger.<relation>``. It is written to a ``.part`` file and renamed when complete, so a
reader never sees half a file and a redelivered job simply replaces it. The job's
``result_url`` is the file's ``file://`` URL, the file is recorded in ``job_files`` (out,
bytes, sha256, records) and the result is ``{"records", "path"}``.

Rows are streamed from the database (server-side cursor) and written as they come, so
memory stays flat however big the dataset; XLSX uses openpyxl's write-only mode.

Every export reads the job's tenant's rows only (:attr:`JobContext.tenant`, the tenant of
the job's ledger row; the payload's ``tenant`` must agree with it). ``ledger:<relation>``
reads a table or view of the ledger database whose name is a plain lower-case identifier
(the reporting views of migration 0003, ``jobs``, ``job_logs``…), limited to the tenant
through its ``tenant`` column, else through its ``job_id`` (rows of the tenant's jobs:
``job_events``, ``job_logs``, ``job_files``, ``job_steps``). A relation with neither
(``report_daily_summary``, which sums every tenant's jobs; ``run_name_counters``,
``alembic_version``…) cannot be limited to a tenant and fails the job, as does a name
that is not an identifier or does not exist. A dataset column order is the order columns
were first imported; values that are objects or lists are written as JSON text in CSV
and XLSX.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import Field

from app.config import LOCAL_DIR, JobledgerSettings, settings
from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import FormatName, Tenant
from tasks._sources import CHUNK, Format


class ExportSettings(JobledgerSettings):
    """Settings of the ``export`` job type."""

    #: Where ``export`` jobs write their files (``JOBLEDGER_EXPORT_DIR``).
    export_dir: Path = LOCAL_DIR / "exports"


LEDGER_PREFIX = "ledger:"
#: A dataset name, or ``ledger:`` and a plain identifier.
EXPORT_NAME = r"^(?:[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}|ledger:[a-z_][a-z0-9_]{0,62})$"
#: Rows between two progress reports (checkpoints come at least every second).
CHECK_EVERY = 1000


class ExportPayload(JobPayload):
    """What ``export_data.delay(...)`` takes."""

    #: A dataset name, or ``ledger:<table or view>``.
    dataset: Annotated[str, Field(pattern=EXPORT_NAME)]
    format: Annotated[Format, FormatName] = "csv"
    #: The job's tenant, whose rows are exported: filled in by ``delay()`` from
    #: ``apply_async(tenant=…)`` when left out; naming another tenant is refused.
    tenant: Tenant = "default"


@job_task("export", ExportPayload, subject="dataset", queue="export")
def export_data(job: JobContext, payload: ExportPayload) -> dict[str, Any]:
    """Export ``payload.dataset`` (see the module docstring)."""
    tenant = job.tenant_of(payload.tenant)
    header, rows, total = _rows_to_export(payload, tenant)
    target = _target_path(payload, tenant, job.job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    job.log(f"exporting {total} rows of {payload.dataset} as {payload.format} to {target}")
    written = 0
    try:
        with _writer(payload.format, partial, header) as out:
            for written, row in enumerate(rows, start=1):
                out.write(row)
                job.tick()  # a checkpoint at least every second, however big the rows
                if written % CHECK_EVERY == 0:
                    job.progress(99 * written / max(total, 1), f"{written} of {total} rows")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size, digest = size_and_sha256(target)
    job.result_url = target.resolve().as_uri()
    job.record_file("out", job.result_url, size=size, sha256=digest, records=written)
    job.log(f"wrote {written} rows ({size} bytes) to {target}")
    return {"records": written, "path": str(target.resolve())}


def _rows_to_export(
    payload: ExportPayload, tenant: str
) -> tuple[list[str], Iterator[list[Any]], int]:
    """``(header, rows, row count)`` of what to export, ``tenant``'s rows only; fails the
    job if it does not exist or cannot be limited to the tenant."""
    if payload.dataset.startswith(LEDGER_PREFIX):
        name = payload.dataset[len(LEDGER_PREFIX) :]
        columns = _store.relation_columns(name)
        if columns is None:
            raise JobFailed(
                f"field 'dataset': no table or view {name!r} in the ledger database to export"
            )
        if _store.tenant_scope(columns) is None:
            # its rows belong to no tenant (or every one): exporting them would hand one
            # tenant what is not its own (operators read such tables with SQL instead)
            raise JobFailed(
                f"field 'dataset': ledger relation {name!r} has neither a tenant nor a "
                f"job_id column, so its rows cannot be limited to tenant {tenant!r}; "
                "export the jobs table, a job_* table or a per-tenant reporting view instead"
            )
        total = _store.count_relation(name, columns, tenant)
        streamed = _store.relation_rows(name, columns, tenant)
        return columns, (list(r) for r in streamed), total
    found = _store.find_dataset(tenant, payload.dataset)
    if found is None:
        raise JobFailed(
            f"field 'dataset': no dataset {payload.dataset!r} for tenant {tenant!r}: "
            "import it first"
        )
    columns = found.columns

    def rows() -> Iterator[list[Any]]:
        for data in _store.dataset_rows(tenant, found.id):
            yield [data.get(column) for column in columns]

    return columns, rows(), found.rows


def _target_path(payload: ExportPayload, tenant: str, job_id: uuid.UUID) -> Path:
    # Names are pattern-checked (no "/" or ".." possible), so they are safe in a path.
    stem = payload.dataset.replace(LEDGER_PREFIX, "ledger.", 1)
    return settings.of(ExportSettings).export_dir / tenant / f"{stem}-{job_id}.{payload.format}"


class _RowWriter(Protocol):
    def write(self, row: Sequence[Any]) -> None: ...


@contextlib.contextmanager
def _writer(format: Format, path: Path, header: list[str]) -> Iterator[_RowWriter]:
    """``path`` opened for ``format`` with the header written; yields the row writer."""
    if format == "xlsx":
        from openpyxl import Workbook  # late: only XLSX exports need it

        workbook = Workbook(write_only=True)
        try:
            sheet = workbook.create_sheet("export")
            sheet.append(header)
            yield _XlsxRows(sheet)
            workbook.save(path)
        finally:
            workbook.close()
        return
    with path.open("w", encoding="utf-8", newline="") as handle:
        if format == "csv":
            rows = csv.writer(handle)
            rows.writerow(header)
            yield _CsvRows(rows)
        else:
            yield _JsonRows(handle, header)


class _CsvRows:
    def __init__(self, rows: Any) -> None:
        self.rows = rows

    def write(self, row: Sequence[Any]) -> None:
        self.rows.writerow(["" if value is None else _text(value) for value in row])


class _XlsxRows:
    def __init__(self, sheet: Any) -> None:
        self.sheet = sheet

    def write(self, row: Sequence[Any]) -> None:
        self.sheet.append([_cell(value) for value in row])


class _JsonRows:
    def __init__(self, handle: Any, header: list[str]) -> None:
        self.handle = handle
        self.header = header

    def write(self, row: Sequence[Any]) -> None:
        document = dict(zip(self.header, (_json(value) for value in row), strict=True))
        self.handle.write(json.dumps(document, ensure_ascii=False) + "\n")


def _json(value: Any) -> Any:
    """A value from a row as JSON: UUIDs, timestamps and decimals as text."""
    if isinstance(value, uuid.UUID | datetime | date | time | Decimal):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value


def _text(value: Any) -> str:
    value = _json(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return _text(value)


def size_and_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()
