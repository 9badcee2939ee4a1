"""Set-based seeding of the ledger for the purge and reporting benchmarks: millions of
jobs, events and log lines in a few ``INSERT … SELECT generate_series`` statements,
not through the ledger API (which would take hours at these sizes).

The rows respect the schema's checks (statuses, triggers, actors, the time order of
``created_at``/``started_at``/``completed_at``, a ``failure_reason`` on failed jobs) and
look like what the ledger writes: run names ``YYYYMMDDhhmmss_N``, a handful of job types
and tenants, mostly succeeded jobs with some failed, canceled and partial ones.

Speed-ups, all confined to the benchmark's own database and undone before measuring:
the secondary indexes of the seeded tables are dropped during the load and recreated
from their exact definitions (``pg_indexes.indexdef``) afterwards, and the foreign-key
triggers are skipped while loading (``session_replication_role = replica``; the rows
are consistent by construction). Then ``VACUUM ANALYZE``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta

from sqlalchemy import Connection, create_engine, text

from benchmarks import _harness as h

TABLES = ("jobs", "job_events", "job_logs")
TYPES = ("import_data", "export_data", "sync_and_suggest", "report", "cleanup")
TENANTS = 20

#: Status by ``g``: live jobs (``live``) only among the newest jobs (``g >= :live_from``,
#: one in ten queued and one in ten running there: live jobs are recent, as in a ledger
#: whose queues drain), then per mille of the rest (the remainder: succeeded).
STATUS_SQL = """
    CASE
        WHEN :live AND g >= :live_from AND g % 10 = 0 THEN 'queued'
        WHEN :live AND g >= :live_from AND g % 10 = 1 THEN 'running'
        WHEN g % 1000 < 22 THEN 'failed'
        WHEN g % 1000 < 27 THEN 'canceled'
        WHEN g % 1000 < 30 THEN 'partial'
        ELSE 'succeeded'
    END
"""

JOBS_SQL = text(
    f"""
    INSERT INTO jobs (id, name, type, status, progress, tenant, subject, payload, result,
                      failure_reason, errors, metadata, celery_task_id, execution_id,
                      attempts, queue, worker, created_by, trigger,
                      created_at, started_at, completed_at, updated_at)
    SELECT id, to_char(created AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS') || '_' || g,
           (CAST(:types AS text[]))[1 + g % :type_count], status,
           CASE WHEN status IN ('queued', 'running') THEN 0 ELSE 100 END,
           'tenant-' || (g % :tenants), 'subject-' || (g % 5000),
           jsonb_build_object('n', g), CASE WHEN status = 'succeeded'
               THEN jsonb_build_object('rows', g % 977) END,
           CASE WHEN status = 'failed' THEN 'the input file could not be read' END,
           '[]'::jsonb, '{{"source": "seed"}}'::jsonb, id::text, gen_random_uuid()::text,
           CASE WHEN status = 'queued' THEN 0 ELSE 1 END, 'celery', 'seed@bench', 'seed',
           'producer', created,
           CASE WHEN status <> 'queued' THEN created + interval '50 ms' END,
           CASE WHEN status NOT IN ('queued', 'running')
               THEN created + interval '50 ms' + (g % 2000) * interval '1 ms' END,
           created + interval '50 ms' + (g % 2000) * interval '1 ms'
    FROM (
        SELECT g, gen_random_uuid() AS id,
               CAST(:start AS timestamptz) + g * CAST(:step AS interval) AS created,
               {STATUS_SQL} AS status
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    ) AS s
    """
)

EVENTS_SQL = text(
    """
    INSERT INTO job_events (job_id, from_status, to_status, message, attempt, worker, actor,
                            created_at)
    SELECT j.id,
           CASE WHEN e = 1 THEN NULL WHEN e = 2 THEN 'queued' ELSE 'running' END,
           CASE WHEN e = 1 THEN 'queued' WHEN e = :k THEN j.status ELSE 'running' END,
           CASE WHEN e = 1 THEN 'queued by producer' ELSE 'progress ' || e END,
           CASE WHEN e = 1 THEN 0 ELSE 1 END, 'seed@bench',
           CASE WHEN e = 1 THEN 'producer' ELSE 'worker' END,
           j.created_at + e * interval '1 ms'
    FROM jobs AS j CROSS JOIN generate_series(1, :k) AS e
    WHERE j.created_at >= :low AND j.created_at < :high
      AND (e = 1 OR j.status <> 'queued')
    """
)

LOGS_SQL = text(
    """
    INSERT INTO job_logs (job_id, level, message, created_at)
    SELECT j.id, CASE WHEN l % 5 = 0 THEN 'WARNING' ELSE 'INFO' END,
           'processed batch ' || l || ' of ' || j.subject || ': 500 rows, 0 rejected',
           j.created_at + l * interval '1 ms'
    FROM jobs AS j CROSS JOIN generate_series(1, :k) AS l
    WHERE j.created_at >= :low AND j.created_at < :high AND j.status <> 'queued'
    """
)


def engine():  # type: ignore[no-untyped-def]
    """An engine on the benchmark database (not the application's)."""
    return create_engine(h.DATABASE_URL)


@contextmanager
def without_secondary_indexes(connection: Connection) -> Iterator[None]:
    """Drop the non-constraint indexes of the seeded tables, recreate them at the end."""
    rows = connection.execute(
        text(
            """
            SELECT indexname, indexdef FROM pg_indexes
            WHERE schemaname = 'public' AND tablename = ANY(:tables)
              AND indexname NOT IN (SELECT conname FROM pg_constraint)
            """
        ),
        {"tables": list(TABLES)},
    ).all()
    for row in rows:
        connection.execute(text(f'DROP INDEX "{row.indexname}"'))
    connection.commit()
    try:
        yield
    finally:
        connection.execute(text("SET maintenance_work_mem = '512MB'"))
        for row in rows:
            connection.execute(text(row.indexdef))
            connection.commit()


def seed(
    count: int,
    *,
    newest: datetime,
    span: timedelta,
    events_per_job: int,
    logs_per_job: int,
    live: bool,
    chunk: int = 1_000_000,
    say: bool = True,
    bulk: bool = True,
) -> dict[str, float]:
    """Insert ``count`` jobs created evenly over ``span`` ending at ``newest`` (oldest
    first), each with its events and log lines; indexes rebuilt, tables analyzed.
    ``live`` makes one in five of the newest 0.1 % of the jobs live (queued or running;
    else all are terminal). ``bulk=False`` keeps the indexes in place and leaves vacuum
    to autovacuum: an ordinary day's insert into a ledger that lives on (bloat simulation).
    Returns the seconds spent loading, indexing and analyzing."""
    step = span / count
    start = newest - span
    timings = {"load_s": 0.0, "index_s": 0.0, "analyze_s": 0.0}
    eng = engine()
    began = time.monotonic()
    with eng.connect() as connection:
        with without_secondary_indexes(connection) if bulk else nullcontext():
            for first in range(0, count, chunk):
                last = min(count, first + chunk) - 1
                low, high = start + first * step, start + (last + 1) * step
                connection.execute(text("SET session_replication_role = replica"))
                connection.execute(
                    JOBS_SQL,
                    {
                        "types": list(TYPES),
                        "type_count": len(TYPES),
                        "tenants": TENANTS,
                        "start": start,
                        "step": step,
                        "first": first,
                        "last": last,
                        "live": live,
                        "live_from": count - max(10, count // 1000),
                    },
                )
                if events_per_job:
                    connection.execute(EVENTS_SQL, {"k": events_per_job, "low": low, "high": high})
                if logs_per_job:
                    connection.execute(LOGS_SQL, {"k": logs_per_job, "low": low, "high": high})
                connection.execute(text("SET session_replication_role = origin"))
                connection.commit()
                if say:
                    print(
                        f"  seeded {last + 1:,} jobs ({time.monotonic() - began:.0f} s)",
                        flush=True,
                    )
            timings["load_s"] = time.monotonic() - began
        timings["index_s"] = time.monotonic() - began - timings["load_s"]
    eng.dispose()
    if not bulk:
        return timings
    analyzed = time.monotonic()
    autocommit = create_engine(h.DATABASE_URL, isolation_level="AUTOCOMMIT")
    with autocommit.connect() as connection:
        for table in TABLES:
            connection.execute(text(f"VACUUM ANALYZE {table}"))
    autocommit.dispose()
    timings["analyze_s"] = time.monotonic() - analyzed
    if say:
        print(
            f"  load {timings['load_s']:.0f} s, indexes {timings['index_s']:.0f} s, "
            f"vacuum analyze {timings['analyze_s']:.0f} s",
            flush=True,
        )
    return timings


def table_sizes() -> dict[str, int]:
    """Total size in bytes (heap + indexes + toast) of each seeded table."""
    eng = engine()
    with eng.connect() as connection:
        sizes = {
            table: int(
                connection.execute(
                    text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": table}
                ).scalar_one()
            )
            for table in TABLES
        }
    eng.dispose()
    return sizes
