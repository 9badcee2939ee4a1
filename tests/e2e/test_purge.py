"""The retention purge: exactly the old terminal jobs go, with all their children; an
archive first when asked; rollups before the delete; live jobs never."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app import cli as cli_module
from app import db
from app.ledger.operations import retention
from tests.support import ledger
from tests.support.jobs import echo
from tests.support.ops import clean_rollups  # also registers purge in the workers


@pytest.fixture(autouse=True)
def _no_rollups() -> None:
    clean_rollups()


TERMINAL = ("succeeded", "failed", "partial", "canceled")

# Jobs n = 1..count, terminal, finished `age` ago, each with 2 events, 2 log lines, and
# for every 10th one 2 steps (with a step event) and a file.
SEED = """
INSERT INTO jobs (id, name, type, status, tenant, payload, failure_reason, attempts,
                  created_at, started_at, completed_at, updated_at)
SELECT gen_random_uuid(), :prefix || n, :type,
       (ARRAY['succeeded','failed','partial','canceled'])[1 + n % 4],
       CASE WHEN n % 2 = 0 THEN 'acme' ELSE 'globex' END, '{}'::jsonb,
       CASE WHEN n % 4 = 1 THEN 'boom' END, 1,
       now() - :age - interval '10 minutes',
       now() - :age - interval '10 minutes' + interval '1 second',
       now() - :age - interval '10 minutes' + interval '1 second' + (n % 50) * interval '1 second',
       now() - :age
FROM generate_series(1, :count) AS n;
INSERT INTO job_events (job_id, from_status, to_status, actor, message, attempt)
SELECT id, NULL, 'queued', 'producer', 'queued', 0 FROM jobs WHERE name LIKE :prefix || '%'
UNION ALL
SELECT id, 'running', status, 'worker', 'done', 1 FROM jobs WHERE name LIKE :prefix || '%';
INSERT INTO job_logs (job_id, level, message)
SELECT id, 'info', 'line ' || g FROM jobs, generate_series(1, 2) AS g
WHERE name LIKE :prefix || '%';
INSERT INTO job_steps (id, job_id, position, step_type, status)
SELECT gen_random_uuid(), id, p, 'step' || p, 'succeeded' FROM jobs, generate_series(1, 2) AS p
WHERE name LIKE :prefix || '%' AND right(name, 1) = '0';
INSERT INTO job_events (job_id, step_id, from_status, to_status, actor, attempt)
SELECT job_id, id, NULL, 'queued', 'producer', 0 FROM job_steps
WHERE job_id IN (SELECT id FROM jobs WHERE name LIKE :prefix || '%');
INSERT INTO job_files (job_id, direction, uri, bytes)
SELECT id, 'in', 'file:///data/' || name, 10 FROM jobs
WHERE name LIKE :prefix || '%' AND right(name, 1) = '0';
"""

LIVE_SEED = """
INSERT INTO jobs (id, name, type, status, tenant, payload, attempts, created_at, started_at,
                  updated_at, heartbeat_at)
SELECT gen_random_uuid(), 'live' || n, 'example.gated',
       CASE WHEN n % 2 = 0 THEN 'running' ELSE 'queued' END, 'acme', '{}'::jsonb, 0,
       now() - interval '60 days',
       CASE WHEN n % 2 = 0 THEN now() - interval '60 days' END,
       now() - interval '60 days',
       CASE WHEN n % 2 = 0 THEN now() - interval '60 days' END
FROM generate_series(1, 50) AS n;
INSERT INTO job_events (job_id, from_status, to_status, actor, attempt)
SELECT id, NULL, 'queued', 'producer', 0 FROM jobs WHERE name LIKE 'live%';
"""


LIVE_EVENTS = (
    "SELECT count(*) FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE name LIKE 'live%')"
)


def seed(prefix: str, count: int, age: str, job_type: str = "example.echo") -> None:
    with db.engine().begin() as connection:
        for statement in filter(str.strip, SEED.split(";")):
            connection.execute(
                text(statement.replace("- :age", f"- interval '{age}'")),
                {"prefix": prefix, "count": count, "type": job_type},
            )


def seed_live() -> None:
    with db.engine().begin() as connection:
        for statement in filter(str.strip, LIVE_SEED.split(";")):
            connection.execute(text(statement))


def children_of(prefix: str) -> dict[str, int]:
    return {
        table: ledger.count(
            f"SELECT count(*) FROM {table} WHERE job_id IN "
            "(SELECT id FROM jobs WHERE name LIKE :p)",
            p=f"{prefix}%",
        )
        for table in ("job_events", "job_logs", "job_steps", "job_files")
    }


@pytest.fixture
def seeded() -> tuple[int, dict[str, int]]:
    """1,000 old terminal jobs, 1,000 recent ones, 50 old live ones; the old children."""
    seed("old", 1000, "40 days")
    seed("new", 1000, "2 days")
    seed_live()
    return ledger.count("SELECT count(*) FROM job_events"), children_of("old")


def test_one_purge_deletes_exactly_the_old_terminal_jobs_and_their_children(
    seeded: tuple[int, dict[str, int]], tmp_path: Path
) -> None:
    events_before, old_children = seeded
    assert old_children == {
        "job_events": 2000 + 200,
        "job_logs": 2000,
        "job_steps": 200,
        "job_files": 100,
    }
    new_children = children_of("new")
    live_events = ledger.count(LIVE_EVENTS)

    result = retention.purge(
        older_than_days=30, archive_dir=tmp_path, batch_size=300, batch_seconds=0
    )

    assert (result.deleted, result.archived, result.rolled_up) == (1000, 1000, 1000)
    assert result.batches == 4
    assert result.children == {"events": 2200, "logs": 2000, "files": 100, "steps": 200}
    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'old%'") == 0
    assert children_of("old") == dict.fromkeys(old_children, 0)
    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'new%'") == 1000
    assert children_of("new") == new_children
    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'live%'") == 50
    assert ledger.count(LIVE_EVENTS) == live_events
    assert ledger.count("SELECT count(*) FROM job_events") == events_before - 2200


def test_the_archive_holds_every_purged_job_with_its_children_readable_with_zcat(
    seeded: tuple[int, dict[str, int]], tmp_path: Path
) -> None:
    old_ids = {
        str(row[0])
        for row in db.engine().connect().execute(text("SELECT id FROM jobs WHERE name LIKE 'old%'"))
    }

    result = retention.purge(
        older_than_days=30, archive_dir=tmp_path, batch_size=400, batch_seconds=0
    )

    files = sorted(tmp_path.glob("*.jsonl.gz"))
    assert [str(f) for f in files] == sorted(result.archive_files)
    assert len(files) == 3
    zcat = shutil.which("zcat")
    if zcat:
        lines = subprocess.run([zcat, *files], capture_output=True, check=True).stdout.splitlines()
    else:  # pragma: no cover - every CI image has zcat; gzip is the same format
        lines = [line for f in files for line in gzip.decompress(f.read_bytes()).splitlines()]
    documents = [json.loads(line) for line in lines]
    assert {d["job"]["id"] for d in documents} == old_ids
    assert sum(len(d["events"]) for d in documents) == 2200
    assert sum(len(d["logs"]) for d in documents) == 2000
    assert sum(len(d["steps"]) for d in documents) == 200
    assert sum(len(d["files"]) for d in documents) == 100
    sample = next(d for d in documents if d["steps"])
    assert [s["position"] for s in sample["steps"]] == [1, 2]
    assert all(e["job_id"] == sample["job"]["id"] for e in sample["events"])
    # timestamps as ISO 8601 with their offset, as the ledger stores them
    assert datetime.fromisoformat(sample["job"]["completed_at"]).utcoffset() is not None
    assert not list(tmp_path.glob("*.partial"))


def test_an_archive_that_cannot_be_written_deletes_nothing(tmp_path: Path) -> None:
    seed("old", 20, "40 days")
    not_a_folder = tmp_path / "archive"
    not_a_folder.write_text("a file where the archive folder should be")

    with pytest.raises(OSError, match="archive"):
        retention.purge(older_than_days=30, archive_dir=not_a_folder)

    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'old%'") == 20
    assert children_of("old")["job_events"] == 40 + 4  # 2 per job, 2 per step
    assert ledger.count("SELECT count(*) FROM job_daily_rollups") == 0


def test_the_purge_folds_jobs_into_daily_rollups_before_deleting(tmp_path: Path) -> None:
    seed("old", 400, "40 days")

    retention.purge(older_than_days=30, batch_size=150)

    with db.engine().connect() as connection:
        rows = (
            connection.execute(text("SELECT * FROM job_daily_rollups ORDER BY tenant"))
            .mappings()
            .all()
        )
    assert [r["tenant"] for r in rows] == ["acme", "globex"]
    assert sum(r["total"] for r in rows) == 400
    totals = {s: sum(r[s] for r in rows) for s in TERMINAL}
    assert totals == {"succeeded": 100, "failed": 100, "partial": 100, "canceled": 100}
    assert all(r["total"] == r["timed"] == sum(r["histogram"].values()) for r in rows)
    # durations are 0..49 s (n % 50); nearest-rank p50/p95 within the 10 % buckets
    for row in rows:
        assert 20 <= row["p50_seconds"] <= 27
        assert 44 <= row["p95_seconds"] <= 52


def test_a_batch_longer_than_the_target_makes_the_next_ones_smaller() -> None:
    seed("old", 60, "40 days")

    # Every batch takes longer than a nanosecond: after the first (50 jobs) they shrink
    # to one job each.
    result = retention.purge(older_than_days=30, batch_size=50, batch_seconds=1e-9, pause_factor=0)

    assert (result.deleted, result.batches) == (60, 1 + 10)
    assert result.paused_seconds == 0
    assert 0 < result.last_batch_seconds <= result.longest_batch_seconds
    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'old%'") == 0


def test_the_purge_pauses_after_each_batch_in_proportion_to_it() -> None:
    seed("old", 30, "40 days")
    batches: list[float] = []

    began = time.monotonic()
    result = retention.purge(
        older_than_days=30,
        batch_size=10,
        batch_seconds=0,
        pause_factor=3,
        between_batches=lambda done: batches.append(done.last_batch_seconds),
    )
    elapsed = time.monotonic() - began

    assert (result.deleted, result.batches) == (30, 3)
    # a pause of 3x each batch but the last (the purge deleted all it counted)
    assert result.paused_seconds == pytest.approx(3 * sum(batches[:2]))
    # the pauses were taken, not just counted
    assert elapsed - result.vacuum_seconds >= result.paused_seconds + sum(batches)


def test_the_purge_command_reports_progress_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    seed("old", 30, "40 days")
    monkeypatch.setattr(cli_module, "PROGRESS_EVERY", 0)

    result = CliRunner().invoke(
        cli_module.cli,
        ["purge", "--older-than", "30", "--batch-size", "10", "--pause-factor", "0"],
    )

    assert result.exit_code == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("purged ")]
    assert [line.split(" jobs")[0] for line in progress] == [
        "purged 10 of 30",
        "purged 20 of 30",
        "purged 30 of 30",
    ]
    assert "deleted 30 jobs" in result.stdout
    assert f"vacuumed {', '.join(retention.PURGED_TABLES)} in " in result.stdout


def test_a_dry_run_counts_and_deletes_nothing() -> None:
    seed("old", 30, "40 days")
    seed("new", 10, "1 day")

    result = retention.purge(older_than_days=30, dry_run=True)

    assert result.deleted == result.candidates == 30
    assert result.children["events"] == 60 + 6
    assert ledger.count("SELECT count(*) FROM jobs") == 40
    assert ledger.count("SELECT count(*) FROM job_daily_rollups") == 0


def vacuums_of_jobs() -> int:
    with db.engine().connect() as connection:
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(
            connection.execute(
                text("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'jobs'")
            ).scalar_one()
        )


def test_a_purge_that_deleted_jobs_vacuums_the_tables_it_deleted_from() -> None:
    seed("old", 5, "40 days")
    before = vacuums_of_jobs()

    result = retention.purge(older_than_days=30)

    assert result.deleted == 5
    assert result.vacuumed == list(retention.PURGED_TABLES)
    assert vacuums_of_jobs() == before + 1  # the machine's autovacuum may be off: ours
    assert result.vacuum_seconds > 0


def test_a_purge_with_nothing_to_delete_does_not_vacuum() -> None:
    seed("new", 3, "1 day")
    result = retention.purge(older_than_days=30)
    assert (result.vacuumed, result.vacuum_seconds) == ([], 0.0)


def test_old_run_name_counters_go_with_the_retention() -> None:
    with db.engine().begin() as connection:
        connection.execute(
            text(
                "INSERT INTO run_name_counters (stamp, last) VALUES "
                "(to_char(now() - interval '40 days', 'YYYYMMDDHH24MISS'), 3), "
                "(to_char(now() - interval '1 day', 'YYYYMMDDHH24MISS'), 1)"
            )
        )

    result = retention.purge(older_than_days=30)

    assert result.counters_deleted == 1
    assert ledger.count("SELECT count(*) FROM run_name_counters") == 1


def test_the_purge_job_runs_on_a_worker_and_records_itself(worker: object) -> None:
    seed("old", 25, "40 days")
    recent = echo.delay(value=7)
    ledger.wait_for_status(recent.id, "succeeded")

    from tasks.maintenance.purge import purge

    job = purge.delay(older_than_days=30, batch_size=10)
    row = ledger.wait_for_status(job.id, "succeeded", "failed")

    assert row["status"] == "succeeded", row["failure_reason"]
    assert row["result"]["deleted"] == 25
    assert row["result"]["batches"] >= 3  # batches of at most 10 (fewer if one ran long)
    assert row["result"]["longest_batch_seconds"] > 0
    assert ledger.job(recent.id) is not None
    assert ledger.count("SELECT count(*) FROM jobs WHERE name LIKE 'old%'") == 0
    assert any("deleted 25 jobs" in line["message"] for line in _logs(job.id))


def _logs(job_id: str) -> list[dict[str, str]]:
    with db.engine().connect() as connection:
        rows = connection.execute(
            text("SELECT message FROM job_logs WHERE job_id = :id ORDER BY id"), {"id": job_id}
        ).mappings()
        return [dict(r) for r in rows]


def test_a_payload_integer_beyond_64_bits_is_archived_not_a_stuck_purge(tmp_path: Path) -> None:
    """orjson refuses such integers; the archive line falls back to ``json`` for them."""
    seed("old", 3, "40 days")
    with db.engine().begin() as connection:
        connection.execute(
            text("UPDATE jobs SET payload = CAST(:p AS jsonb) WHERE name LIKE 'old%'"),
            {"p": json.dumps({"n": 2**70})},
        )

    result = retention.purge(older_than_days=30, archive_dir=tmp_path)

    assert result.deleted == result.archived == 3
    lines = [
        line
        for path in result.archive_files
        for line in gzip.decompress(Path(path).read_bytes()).splitlines()
    ]
    assert [json.loads(line)["job"]["payload"] for line in lines] == [{"n": 2**70}] * 3
