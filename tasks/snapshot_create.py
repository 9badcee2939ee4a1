"""Job type ``snapshot_create``: write a snapshot file of a budget — its transactions,
categories and suggestions — and record it as the job's out file.

Usage::

    from tasks.snapshot_create import snapshot_create

    snapshot_create.delay("household")        # result: {"path", "records", "size", "sha256", …}

The file is ``<JOBLEDGER_SNAPSHOT_DIR>/<tenant>/<budget_id>/<job id>.snapshot.jsonl``
(:mod:`tasks._snapshot_files`; default ``var/snapshots``), in the format of
:mod:`tasks._snapshots` (a header, the records, a trailer with counts and a checksum).
It is written to a ``.part`` file and renamed when complete, so no reader ever sees half
a snapshot, and a body run twice (acks late) writes the same path again. The job's
``result_url`` is the file's ``file://`` URL and ``job_files`` holds it as ``out`` with
its size, record count and SHA-256: what ``snapshot_redownload`` checks it against.

Everything is read in one consistent read (:func:`tasks._snapshot_store.consistent_read`)
of the job's tenant only. A budget with no transactions and no suggestions is not
snapshotted: the job fails naming ``budget_id`` (a typo would otherwise give an empty
snapshot, which a restore would turn into an emptied budget). A cancel stops the job at
its next checkpoint (every transaction or suggestion read checks at most every half a
second): the ``.part`` file is removed and no file is recorded.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _snapshot_store
from tasks._fields import BudgetId
from tasks._snapshot_files import snapshot_path
from tasks._snapshots import Header, SnapshotWriter, SuggestionRecord, TransactionRecord
from tasks._sources import CHUNK
from tasks.export_data import size_and_sha256

#: Records between two progress reports.
REPORT_EVERY = 1000


class SnapshotCreatePayload(JobPayload):
    """What ``snapshot_create.delay(...)`` takes."""

    budget_id: BudgetId


@job_task("snapshot_create", SnapshotCreatePayload, subject="budget_id", queue="snapshots")
def snapshot_create(job: JobContext, payload: SnapshotCreatePayload) -> dict[str, Any]:
    """Snapshot ``payload.budget_id`` (see the module docstring)."""
    tenant, budget = job.tenant, payload.budget_id
    target = snapshot_path(tenant, budget, job.job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    header = Header(
        snapshot="jobledger.budget",
        version=1,
        tenant=tenant,
        budget_id=budget,
        job_id=str(job.job_id),
        created_at=datetime.now(UTC).isoformat(),
    )
    try:
        with _snapshot_store.consistent_read() as connection:
            counts = _snapshot_store.count_budget(connection, tenant, budget)
            total = counts["transactions"] + counts["suggestions"]
            if total == 0:
                raise JobFailed(
                    f"field 'budget_id': budget {budget!r} of tenant {tenant!r} has no "
                    "transactions or suggestions to snapshot"
                )
            job.log(
                f"snapshotting {counts['transactions']} transactions and "
                f"{counts['suggestions']} suggestions of {budget} to {target}"
            )
            with partial.open("wb", buffering=CHUNK) as handle:
                writer = SnapshotWriter(handle, header)
                for category in _snapshot_store.budget_categories(connection, tenant, budget):
                    writer.write(category)
                records: Iterator[TransactionRecord | SuggestionRecord] = itertools.chain(
                    _snapshot_store.budget_transactions(connection, tenant, budget),
                    _snapshot_store.budget_suggestions(connection, tenant, budget),
                )
                for done, record in enumerate(records, start=1):
                    writer.write(record)
                    job.tick()
                    if done % REPORT_EVERY == 0:
                        job.progress(95 * done / total, f"{done} of {total} records written")
                job.check_canceled()  # the last checkpoint before the file counts
                written = writer.finish()
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    size, digest = size_and_sha256(target)
    job.result_url = target.as_uri()
    job.record_file("out", job.result_url, size=size, sha256=digest, records=written)
    job.log(f"wrote {written} records ({size} bytes, sha256 {digest}) to {target}")
    return {
        "path": str(target),
        "records": written,
        "transactions": writer.counts["transactions"],
        "categories": writer.counts["categories"],
        "suggestions": writer.counts["suggestions"],
        "size": size,
        "sha256": digest,
    }
