"""Job type ``snapshot_redownload``: fetch a budget snapshot again, check it, and restore
the budget from it (or fail saying which check failed).

Usage::

    from tasks.snapshot_redownload import snapshot_redownload

    snapshot_redownload.delay("household", snapshot_job=created.id)     # where it was written
    snapshot_redownload.delay("household", source="https://backup.example/h.snapshot.jsonl",
                              sha256="…")                               # from a source
    snapshot_redownload.delay("household", snapshot_job=created.id, restore=False)  # check only

Where from (exactly one):

- ``snapshot_job``: a ``snapshot_create`` job of the job's tenant that succeeded; its out
  file as ``job_files`` recorded it is read again, and must still have the recorded size,
  SHA-256 and record count;
- ``source``: a local path or ``file://`` URL inside the tenant's snapshot folder
  (``JOBLEDGER_SNAPSHOT_DIR/<tenant>``: another folder, ``..`` or a symlink out of it is
  refused as check ``location``), or an http(s) URL (reached like any source, within
  ``JOBLEDGER_SOURCE_ALLOWED_NETWORKS``); ``sha256``, when given, must be the file's.

The checks, in order (:data:`tasks._snapshots.CHECKS`): ``location``, ``size``,
``sha256``, ``format``, ``content_sha256`` (the trailer's checksum of the records),
``records``, ``tenant``, ``budget_id``, ``references``. The first that fails fails the
job with ``snapshot check '<name>' failed: …`` (and an item of ``errors`` naming the
check), and nothing of the budget has been touched.

Restore (``restore``, default true): the budget's transactions and suggestions are
replaced by the snapshot's, and its sync cursors dropped, in **one database transaction**
(:func:`tasks._snapshot_store.restore_budget`): the budget afterwards is either all of
the snapshot or exactly what it was. The snapshot is read and checked whole before that
transaction opens (into a temporary file; what the checks need is held, each
transaction's ``external_id``, not the records), then read again into the transaction,
a thousand rows an insert; cancel checkpoints come while fetching
and reading, none inside the transaction, so a cancel leaves the budget as it was unless
the restore had already committed (then the job ends ``succeeded``: the restore happened).
Running the job twice restores the same snapshot twice: the same budget.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from typing import IO, Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from sqlalchemy.exc import SQLAlchemyError

from app.config import settings
from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _snapshot_store
from tasks._fields import BudgetId, Location
from tasks._snapshot_files import (
    SnapshotRefused,
    SnapshotSettings,
    confined_snapshot,
    tenant_folder,
)
from tasks._snapshots import (
    SnapshotCheckFailed,
    SnapshotContents,
    read_snapshot,
    snapshot_records,
)
from tasks._sources import SourceUnreadable, is_http, open_source

SHA256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class SnapshotRedownloadPayload(JobPayload):
    """What ``snapshot_redownload.delay(...)`` takes."""

    budget_id: BudgetId
    #: A ``snapshot_create`` job of the same tenant whose file to fetch again.
    snapshot_job: uuid.UUID | None = None
    #: Or where the snapshot is: a path in the tenant's snapshot folder, or an http(s) URL.
    source: Location | None = Field(default=None, validate_default=True)
    #: The SHA-256 the file must have (hex).
    sha256: SHA256 | None = None
    #: False: fetch and check only, restore nothing.
    restore: bool = True

    @field_validator("source")
    @classmethod
    def _one_origin(cls, value: str | None, info: ValidationInfo) -> str | None:
        named = info.data.get("snapshot_job") is not None
        if "snapshot_job" in info.data and named == (value is not None):
            raise ValueError(
                "give exactly one of snapshot_job (a snapshot_create job) and source "
                "(a path in the tenant's snapshot folder, or an http(s) URL)"
            )
        return value

    @field_validator("sha256")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()


@job_task("snapshot_redownload", SnapshotRedownloadPayload, subject="budget_id", queue="snapshots")
def snapshot_redownload(job: JobContext, payload: SnapshotRedownloadPayload) -> dict[str, Any]:
    """Fetch, check and restore a snapshot (see the module docstring)."""
    with tempfile.TemporaryFile() as copy:
        try:
            location, expected = _origin(job, payload)
            uri, size, digest = _fetch(job, location, copy)
            job.record_file("in", uri, size=size, sha256=digest)
            _compare(expected, size, digest)
            copy.seek(0)
            job.progress(30, f"fetched {size} bytes; reading the snapshot")
            contents = read_snapshot(
                copy,
                expect_tenant=job.tenant,
                expect_budget=payload.budget_id,
                expect_records=expected.records,
                tick=job.tick,
                keep=False,  # the restore reads the checked copy again, streamed
            )
        except SnapshotCheckFailed as failed:
            raise JobFailed(
                str(failed), errors=[{"check": failed.check, "message": failed.problem}]
            ) from None
        result: dict[str, Any] = {
            "location": uri,
            "size": size,
            "sha256": digest,
            "records": contents.records,
            "checks": "passed",
            "restored": False,
        }
        if not payload.restore:
            job.log(f"snapshot {uri} passed every check; not restored (restore=false)")
            return result
        return {**result, **_restore(job, payload, contents, copy), "restored": True}


@dataclass(frozen=True)
class Expected:
    """What the fetched file must be (None: not known, not checked)."""

    size: int | None = None
    sha256: str | None = None
    records: int | None = None


def _origin(job: JobContext, payload: SnapshotRedownloadPayload) -> tuple[str, Expected]:
    """Where to fetch from, and what the ledger (or the payload) says the file is."""
    if payload.snapshot_job is None:
        assert payload.source is not None
        return payload.source, Expected(sha256=payload.sha256)
    recorded = _snapshot_store.recorded_snapshot(job.tenant, payload.snapshot_job)
    if recorded is None:
        raise JobFailed(
            f"field 'snapshot_job': no snapshot_create job {payload.snapshot_job} in tenant "
            f"{job.tenant!r}"
        )
    if recorded.status != "succeeded" or recorded.uri is None:
        raise JobFailed(
            f"field 'snapshot_job': snapshot_create job {payload.snapshot_job} is "
            f"{recorded.status} and recorded no snapshot file to fetch"
        )
    if payload.sha256 is not None and payload.sha256 != recorded.sha256:
        raise SnapshotCheckFailed(
            "sha256", f"the payload's sha256 is not the one the ledger recorded ({recorded.sha256})"
        )
    return recorded.uri, Expected(recorded.size, recorded.sha256, recorded.records)


def _fetch(job: JobContext, location: str, copy: IO[bytes]) -> tuple[str, int, str]:
    """Copy the snapshot at ``location`` into ``copy``: ``(uri, size, sha256)``."""
    roots = None
    if not is_http(location):
        try:
            confined_snapshot(job.tenant, location)
        except SnapshotRefused as refused:
            raise SnapshotCheckFailed("location", str(refused)) from None
        roots = (tenant_folder(job.tenant),)
    job.log(f"fetching snapshot {location}")
    limit = settings.of(SnapshotSettings).snapshot_max_bytes
    read = 0
    try:
        with open_source(location, roots=roots) as opened:
            for chunk in iter(lambda: opened.stream.read(1024 * 1024), b""):
                read += len(chunk)
                if read > limit:
                    raise SnapshotCheckFailed(
                        "size",
                        f"more than JOBLEDGER_SNAPSHOT_MAX_BYTES ({limit} bytes): stopped "
                        "reading; raise the setting if the snapshot is genuine",
                    )
                copy.write(chunk)
                job.tick()
            return opened.uri, opened.size, opened.sha256
    except SourceUnreadable as error:
        raise SnapshotCheckFailed("location", str(error)) from None


def _compare(expected: Expected, size: int, digest: str) -> None:
    if expected.size is not None and expected.size != size:
        raise SnapshotCheckFailed(
            "size", f"fetched {size} bytes, the ledger recorded {expected.size}"
        )
    if expected.sha256 is not None and expected.sha256 != digest:
        raise SnapshotCheckFailed(
            "sha256", f"the file's SHA-256 is {digest}, expected {expected.sha256}"
        )


def _restore(
    job: JobContext, payload: SnapshotRedownloadPayload, contents: SnapshotContents, copy: IO[bytes]
) -> dict[str, int]:
    """Restore the checked snapshot in ``copy`` (its records read again, streamed)."""
    job.check_canceled()  # the last checkpoint: the restore below is one transaction
    job.progress(90, f"restoring {contents.counts['transactions']} transactions")
    records = snapshot_records(copy)
    try:
        counts = _snapshot_store.restore_budget(job.tenant, payload.budget_id, job.job_id, records)
    except SQLAlchemyError as error:  # e.g. a text PostgreSQL refuses (a NUL in a memo)
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()
        raise JobFailed(
            "the restore was rolled back, the budget is as it was: the database refused "
            f"the snapshot's rows ({type(error).__name__}: {cause[0] if cause else ''})"
        ) from None
    job.log(
        f"restored budget {payload.budget_id}: {counts['transactions_restored']} transactions "
        f"and {counts['suggestions_restored']} suggestions (replacing "
        f"{counts['transactions_removed']} and {counts['suggestions_removed']})"
    )
    return counts
