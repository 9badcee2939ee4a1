"""The retention purge: finished jobs older than the retention leave the ledger, in
bounded batches, archived first when asked, folded into daily rollups before they go.

Usage::

    from app.ledger.operations import retention

    result = retention.purge()                        # JOBLEDGER_RETENTION_DAYS, archive
    retention.purge(older_than_days=90, dry_run=True)  # what would go, nothing written

Scheduled daily by beat as the ``purge`` job (:mod:`tasks.maintenance.purge`), itself in the ledger.

Rules, and why:

- Only terminal jobs (succeeded, partial, failed, canceled) whose ``completed_at`` is older
  than the cutoff, measured on the database clock. A live job is never touched whatever
  its age (the lifeline is what ends stuck ones), nor the purge job itself, nor a job with
  a child job that must stay (the foreign key would cascade to it).
- Jobs of the archive-only types (``interface_run``: :mod:`app.ledger.rules.archive_only`)
  go only into an archive: with no archive directory they are kept, counted in
  ``kept_unarchived``; with one they are written to it with their batch, like any job.
- One transaction per batch (at most ``JOBLEDGER_PURGE_BATCH_SIZE`` jobs, fewer when
  batches run longer than ``JOBLEDGER_PURGE_BATCH_SECONDS``), and a pause after each one
  (``JOBLEDGER_PURGE_PAUSE_FACTOR`` times its duration) so ingest keeps the machine: see
  :mod:`app.ledger.operations.purge_pacing`. In each batch: lock it (``FOR UPDATE SKIP LOCKED``: two
  purges never wait on each other), read it with its steps, events, logs and files, write
  the archive file, fold the batch into the rollups, delete children then jobs, commit.
  Locks are held for one batch only, on rows nobody writes any more, so producers and
  workers are never blocked for long.
- Archive (``JOBLEDGER_ARCHIVE_DIR``): one gzip JSON-lines file per batch, one line per job
  (``{"job": …, "steps": […], "events": […], "logs": […], "files": […]}``), written to a
  temporary name, flushed to disk and renamed before the deletes. If the write fails the
  transaction rolls back and nothing of that batch is deleted. The archive is
  at-least-once: a batch whose commit fails after its file was written is archived again
  by the next run (same file name within a run) — deduplicate by ``job.id`` when loading.
- Rollups (``job_daily_rollups``): per UTC day of ``completed_at``, type and tenant, counts
  per final status and a log-scale duration histogram (:mod:`app.ledger.rules.durations`) from which
  p50/p95 are read; merged in the same transaction as the delete, so each job is counted
  exactly once and history reports (``report_daily_history``) survive the purge. The
  batch's jobs not yet in the hourly trend rollups are folded there too
  (:func:`app.ledger.reads.trends.fold_purged`), so charts and ``/metrics`` survive it.
- Run-name counters of seconds older than the cutoff are deleted too (they can no longer
  collide with a new job's name).
- Then the tables it deleted from are vacuumed (``JOBLEDGER_PURGE_VACUUM``, on by default;
  PostgreSQL): a day's deletes become free space for the next day's inserts without
  waiting for autovacuum (see :func:`vacuum_purged_tables`).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection

from app.config import settings
from app.db import engine, in_transaction
from app.ledger import engines
from app.ledger.engines import queries as q
from app.ledger.engines import retention_queries as rq
from app.ledger.operations.purge_pacing import PurgePacing
from app.ledger.reads import trends
from app.ledger.reads.reports import database_now, jsonable
from app.ledger.rules.archive_only import ARCHIVE_ONLY_TYPES
from app.ledger.rules.durations import duration_bucket, histogram_percentile

#: gzip level of the archive files, and the orjson options of their lines: sorted keys,
#: one document per line, and keys that are ``str`` subclasses (SQLAlchemy's column names
#: are ``quoted_name``; orjson takes only exact ``str`` keys without the option).
ARCHIVE_GZIP_LEVEL = 6
ARCHIVE_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


@dataclass
class PurgeResult:
    """What one purge did (or, with ``dry_run``, would do)."""

    cutoff: datetime
    dry_run: bool
    #: Jobs eligible when the purge started.
    candidates: int = 0
    archived: int = 0
    rolled_up: int = 0
    deleted: int = 0
    #: Child rows deleted (or that would be), per table: steps, events, logs, files.
    children: dict[str, int] = field(default_factory=lambda: dict.fromkeys(rq.CHILDREN, 0))
    counters_deleted: int = 0
    #: Jobs of the archive-only types (``interface_run``) old enough to go, kept because
    #: no archive is configured (:mod:`app.ledger.rules.archive_only`).
    kept_unarchived: int = 0
    #: Tables vacuumed after the deletes (``JOBLEDGER_PURGE_VACUUM``).
    vacuumed: list[str] = field(default_factory=list)
    batches: int = 0
    archive_files: list[str] = field(default_factory=list)
    #: Duration of the last committed batch and of the longest one (its transaction).
    last_batch_seconds: float = 0.0
    longest_batch_seconds: float = 0.0
    #: Time spent pausing between batches (``JOBLEDGER_PURGE_PAUSE_FACTOR``).
    paused_seconds: float = 0.0
    #: Duration of the closing VACUUM (no lock that blocks reads or writes, but long:
    #: seconds on large tables; it shows in ``pg_stat_activity`` as one long statement).
    vacuum_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready document (the purge job's ``result``)."""
        return jsonable(asdict(self))  # type: ignore[no-any-return]


def purge(
    *,
    older_than_days: float | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    archive_dir: Path | None = None,
    exclude_job_id: uuid.UUID | None = None,
    between_batches: Callable[[PurgeResult], None] | None = None,
    batch_seconds: float | None = None,
    pause_factor: float | None = None,
) -> PurgeResult:
    """Purge terminal jobs finished more than ``older_than_days`` ago (default
    ``JOBLEDGER_RETENTION_DAYS``), archiving to ``archive_dir`` (default
    ``JOBLEDGER_ARCHIVE_DIR``) first when set. ``batch_size`` is the largest batch,
    ``batch_seconds`` the target duration of one and ``pause_factor`` the pause after
    each (defaults: the settings; see :mod:`app.ledger.operations.purge_pacing`).

    ``between_batches`` runs after each committed batch (the purge job reports progress
    and checks for a cancel there). Raises whatever stopped a batch (an archive that could
    not be written, the ledger unreachable); the batches committed before it stay done.
    """
    config = settings()
    days = config.retention_days if older_than_days is None else older_than_days
    if days < 0:
        raise ValueError(f"older_than_days must be >= 0, got {days}")
    pacing = PurgePacing(
        largest=batch_size or config.purge_batch_size,
        target_seconds=config.purge_batch_seconds if batch_seconds is None else batch_seconds,
        pause_factor=config.purge_pause_factor if pause_factor is None else pause_factor,
    )
    folder = archive_dir if archive_dir is not None else config.archive_dir
    archiving = folder is not None
    with engine().connect() as connection:
        cutoff = database_now(connection) - timedelta(days=days)
        result = PurgeResult(cutoff=cutoff, dry_run=dry_run)
        result.candidates = connection.execute(
            rq.count_purgeable(cutoff, exclude_job_id, archiving)
        ).scalar_one()
        if not archiving:
            result.kept_unarchived = connection.execute(
                rq.count_kept_unarchived(cutoff)
            ).scalar_one()
        if dry_run:
            for name, table in rq.CHILDREN.items():
                result.children[name] = connection.execute(
                    rq.count_children(table, cutoff, exclude_job_id, archiving)
                ).scalar_one()
            result.deleted = result.candidates
            return result
    run_stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"-{uuid.uuid4().hex[:6]}"
    while True:
        target = None
        if folder is not None:
            target = Path(folder) / f"jobledger-{run_stamp}-{result.batches + 1:05d}.jsonl.gz"
        size = pacing.size
        began = time.monotonic()
        done = in_transaction(
            functools.partial(
                _purge_batch, cutoff=cutoff, exclude=exclude_job_id, size=size, archive=target
            ),
            "retention purge batch",
        )
        if done.jobs == 0:
            break
        seconds = time.monotonic() - began
        result.batches += 1
        result.last_batch_seconds = seconds
        result.longest_batch_seconds = max(result.longest_batch_seconds, seconds)
        result.deleted += done.jobs
        result.rolled_up += done.jobs
        for name, count in done.children.items():
            result.children[name] += count
        if target is not None:
            result.archived += done.jobs
            result.archive_files.append(str(target))
        if between_batches is not None:
            between_batches(result)
        pause = pacing.after(done.jobs, seconds)
        if done.jobs < size or result.deleted >= result.candidates:
            break  # the last batch (or all there was): no pause after it
        time.sleep(pause)  # the pacing's yield to ingest, not a wait for anything
        result.paused_seconds += pause
    stamp = cutoff.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    result.counters_deleted = in_transaction(
        lambda connection: connection.execute(q.delete_counters_before(stamp)).rowcount,
        "purge of run-name counters",
    )
    if result.deleted and config.purge_vacuum:
        began = time.monotonic()
        result.vacuumed = vacuum_purged_tables()
        if result.vacuumed:
            result.vacuum_seconds = time.monotonic() - began
    return result


def kept_message(kept: int) -> str:
    """What a purge says of the archive-only jobs it kept (its log, the CLI)."""
    return (
        f"kept {kept} old jobs of types that are deleted only into an archive "
        f"({', '.join(sorted(ARCHIVE_ONLY_TYPES))}): set JOBLEDGER_ARCHIVE_DIR to archive "
        "and purge them"
    )


#: The tables a purge deletes from, vacuumed after it (see :func:`vacuum_purged_tables`).
PURGED_TABLES = ("jobs", *sorted(table.name for table in rq.CHILDREN.values()))


def vacuum_purged_tables() -> list[str]:
    """``VACUUM (ANALYZE)`` the tables the purge deleted from, so the next days' inserts
    reuse the space at once. Autovacuum would get there after 20 % of a table is dead
    (six daily purges at 30 days' retention) — or never, where it is off, and the ledger
    then grows with the number of jobs held constant (benchmarks/RESULTS.md, "Bloat").
    Plain VACUUM takes no lock that blocks reads or writes. The tables vacuumed: none
    where the database needs no such step (SQLite)."""
    return engines.current().vacuum(PURGED_TABLES)


@dataclass(frozen=True)
class _Batch:
    jobs: int
    children: dict[str, int]


def _purge_batch(
    connection: Connection,
    cutoff: datetime,
    exclude: uuid.UUID | None,
    size: int,
    archive: Path | None,
) -> _Batch:
    query = rq.lock_batch(cutoff, exclude, size, archiving=archive is not None)
    batch = [dict(row._mapping) for row in connection.execute(query)]
    if not batch:
        return _Batch(0, {})
    ids = [row["id"] for row in batch]
    if archive is not None:
        children = {
            name: [dict(row._mapping) for row in connection.execute(rq.children_of(table, ids))]
            for name, table in rq.CHILDREN.items()
        }
        write_archive(archive, batch, children)
    fold_into_rollups(connection, batch)
    trends.fold_purged(connection, batch)
    deleted = {
        name: connection.execute(rq.delete_children(table, ids)).rowcount
        for name, table in rq.CHILDREN.items()
    }
    jobs_deleted = connection.execute(rq.delete_jobs(ids)).rowcount
    if jobs_deleted != len(ids):  # cannot happen while the rows are locked; never half-purge
        raise RuntimeError(f"purge batch locked {len(ids)} jobs but deleted {jobs_deleted}")
    return _Batch(jobs_deleted, deleted)


def write_archive(
    path: Path, batch: list[dict[str, Any]], children: dict[str, list[dict[str, Any]]]
) -> None:
    """Write one batch as gzip JSON lines, durably, under ``path`` (atomic rename).

    Encoded by orjson (UUIDs and timestamps natively, as ``str()`` and ``isoformat()``
    would; an integer beyond 64 bits falls back to ``json``) at gzip level 6, zlib's own
    default: several times less CPU than ``json.dumps`` at gzip's default level 9 for the
    same documents and the same size (benchmarks/RESULTS.md). That CPU is taken from
    ingest on a small machine, inside the batch's transaction."""
    by_job: dict[Any, dict[str, list[dict[str, Any]]]] = {
        row["id"]: {name: [] for name in children} for row in batch
    }
    for name, rows in children.items():
        for row in rows:
            by_job[row["job_id"]][name].append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=ARCHIVE_GZIP_LEVEL) as zipped:
            for row in batch:
                document = {"job": row, **by_job[row["id"]]}
                zipped.write(archive_line(document))
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, path)


def archive_line(document: dict[str, Any]) -> bytes:
    """One archive line: orjson, or the standard library for what orjson refuses (an
    integer beyond 64 bits in a payload or result), so no job can stop the purge."""
    try:
        return orjson.dumps(document, option=ARCHIVE_JSON)
    except orjson.JSONEncodeError:
        return json.dumps(jsonable(document), sort_keys=True).encode() + b"\n"


def fold_into_rollups(connection: Connection, batch: list[dict[str, Any]]) -> None:
    """Add a batch of finished jobs to their days' rollup rows (same transaction as the
    delete, so a job is counted once)."""
    deltas: dict[tuple[date, str, str], dict[str, Any]] = {}
    for job in batch:
        completed = _aware(job["completed_at"])
        key = (completed.date(), job["type"], job["tenant"])
        delta = deltas.setdefault(key, {"total": 0, "histogram": {}, "seconds": 0.0, "timed": 0})
        delta["total"] += 1
        delta[job["status"]] = delta.get(job["status"], 0) + 1
        if job["started_at"] is not None:
            seconds = max(0.0, (completed - _aware(job["started_at"])).total_seconds())
            bucket = str(duration_bucket(seconds))
            delta["histogram"][bucket] = delta["histogram"].get(bucket, 0) + 1
            delta["seconds"] += seconds
            delta["timed"] += 1
    for (day, job_type, tenant), delta in sorted(deltas.items()):
        connection.execute(rq.ensure_rollup(engines.current(), day, job_type, tenant))
        row = connection.execute(rq.lock_rollup(day, job_type, tenant)).one()
        histogram = {str(k): int(v) for k, v in (row.histogram or {}).items()}
        for bucket, count in delta["histogram"].items():
            histogram[bucket] = histogram.get(bucket, 0) + count
        values = {
            "total": row.total + delta["total"],
            "succeeded": row.succeeded + delta.get("succeeded", 0),
            "partial": row.partial + delta.get("partial", 0),
            "failed": row.failed + delta.get("failed", 0),
            "canceled": row.canceled + delta.get("canceled", 0),
            "timed": row.timed + delta["timed"],
            "duration_sum_seconds": row.duration_sum_seconds + delta["seconds"],
            "histogram": histogram,
            "p50_seconds": histogram_percentile(histogram, 0.50),
            "p95_seconds": histogram_percentile(histogram, 0.95),
        }
        connection.execute(rq.update_rollup(day, job_type, tenant, values))


def _aware(moment: datetime | str) -> datetime:
    """Timestamps as aware UTC datetimes (SQLite hands back naive ones or text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
