"""Job type ``interface_run``: one run of a payroll gateway interface (seed 000's
InterfaceJob). It reads a file from the tenant's inbox, imports its records into a
dataset, archives the file, and records what it did in the job's metadata.

Usage::

    from tasks import interface_run

    interface_run.delay(
        interface="ta-in",                 # the interface definition (the job's subject)
        source="timesheets-2025-02.csv",   # a file in <JOBLEDGER_INTERFACE_DIR>/<tenant>/inbox
        dataset="timesheets",
        key="entry_id",
        columns={"entry_id": "int", "hours": "decimal"},
    )

The tenant's area is ``<JOBLEDGER_INTERFACE_DIR>/<tenant>/`` (default ``var/interfaces``):
files arrive in ``inbox/`` and processed ones go to ``archive/``. ``source`` is a plain
file name (no folder, refused at ``delay()`` otherwise) and the file is opened through
:mod:`tasks._confine` with the inbox as the only root: a symlink in the inbox that leads
outside it is refused, never read.

Steps, and what each leaves if the run stops there:

1. Import the records with the ``import`` job type's own code
   (:func:`tasks.import_data.import_records`): same formats, typed ``columns``, ``key``,
   batches, item errors, cancel checkpoints. A canceled or failed run leaves the file in
   the inbox (and, like an import, the batches it committed, noted in
   ``metadata.rows_committed``): run it again (``jobledger retry``) to finish.
2. Archive the file: ``os.replace`` (atomic, within the tenant's area) to
   ``archive/<job id>-<file>``, the folder's entry made durable (fsync).
3. Record ``metadata.files_processed``, ``records_imported``, ``duration_seconds`` and
   ``archived_as``, as the seed's InterfaceJob does; the result is the import's counts
   with ``archived_as``.

Idempotent (messages are acknowledged late, so a run whose worker dies is delivered
again): a run delivered again after its file was archived imports the archived copy again
(keyed rows are upserted, unkeyed ones of the same job replaced, as a re-delivered import
does) and does not archive twice. A file missing from both places fails the job.

Old runs are archived, never deleted: the retention purge deletes an ``interface_run``
job only after writing it to the purge's archive (``JOBLEDGER_ARCHIVE_DIR``); with no
archive configured it keeps them (:mod:`app.ledger.operations.retention`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from app.config import LOCAL_DIR, JobledgerSettings, settings
from app.db import in_transaction
from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import job_task
from tasks._confine import SourceRefused, confined_path
from tasks._fields import NAME_PATTERN
from tasks.import_data import ImportPayload, import_records


class Interfaces(JobledgerSettings):
    """Where interface runs find their files."""

    #: The tenants' interface areas: ``<dir>/<tenant>/inbox`` and ``<dir>/<tenant>/archive``.
    interface_dir: Path = LOCAL_DIR / "interfaces"


def tenant_area(tenant: str) -> Path:
    """The interface area of ``tenant`` (a tenant name has no ``/`` and no leading dot)."""
    return Path(os.path.realpath(settings.of(Interfaces).interface_dir)) / tenant


class InterfaceRunPayload(ImportPayload):
    """What ``interface_run.delay(...)`` takes: an import's payload (``dataset``,
    ``tenant``, ``format``, ``key``, ``columns``, ``batch_size``, the same rules) whose
    ``source`` is a file's name in the tenant's inbox, and the interface it runs."""

    #: The file's name in the tenant's inbox: a name, not a path.
    source: str = Field(pattern=NAME_PATTERN)
    #: The interface definition this run executes (the job's subject).
    interface: str = Field(pattern=NAME_PATTERN)


@job_task("interface_run", InterfaceRunPayload, subject="interface", queue="interfaces")
def interface_run(job: JobContext, payload: InterfaceRunPayload) -> dict[str, Any]:
    """Import, archive, record (see the module docstring)."""
    began = time.monotonic()
    area = tenant_area(job.tenant_of(payload.tenant))
    inbox, archive = area / "inbox", area / "archive"
    arrived = inbox / payload.source
    archived = archive / f"{job.job_id}-{payload.source}"
    if os.path.lexists(arrived):
        source = arrived
    elif archived.exists():
        source = archived
        job.log(
            f"{payload.source} was archived by an earlier delivery of this run: importing it again"
        )
    else:
        raise JobFailed(f"field 'source': no file {payload.source!r} in the tenant's inbox")
    try:
        confined_path(source, (inbox, archive))
    except SourceRefused:
        raise JobFailed(
            f"field 'source': {payload.source!r} leads outside the tenant's inbox (a "
            "symlink?): refused, not read"
        ) from None
    job.log(f"interface {payload.interface}: processing {source.relative_to(area)}")
    imported = import_records(
        job, payload.model_copy(update={"source": str(source)}), roots=(inbox, archive)
    )
    if source == arrived:
        move_durably(arrived, archived)
        job.log(f"archived {payload.source} as {archived.relative_to(area)}")
    run = {
        "files_processed": 1,
        "records_imported": imported["records_imported"],
        "duration_seconds": round(time.monotonic() - began, 3),
        "archived_as": str(archived.relative_to(area)),
    }
    in_transaction(job.noting(**run), f"metadata of interface run {job.job_id}")
    return {**imported, "archived_as": run["archived_as"]}


def move_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same file system: the tenant's area) and fsync
    the folders, so that after a crash the file is in exactly one of them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    for folder in {source.parent, target.parent}:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
