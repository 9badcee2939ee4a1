"""The reporting views of migration 0003, on PostgreSQL and on SQLite, and the report
module that reads them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from app import db
from app.ledger.operations import retention
from app.ledger.reads import reports
from app.migrate import upgrade
from tests.support.ops import clean_rollups

VIEWS = (
    "report_status_counts",
    "report_daily_summary",
    "report_daily_history",
    "report_recent_failures",
    "report_step_durations",
)


@pytest.fixture(autouse=True)
def _no_rollups() -> None:
    clean_rollups()


def insert_job(connection: Any, status: str, seconds: int | None, **values: Any) -> uuid.UUID:
    """A finished job with a duration of ``seconds``, completed 1 hour ago (UTC today or
    yesterday: the tests compare days through the views themselves)."""
    job_id = uuid.uuid4()
    row = {
        "id": str(job_id),
        "name": f"v{job_id.hex[:12]}",
        "type": values.get("type", "import"),
        "tenant": values.get("tenant", "acme"),
        "status": status,
        "reason": "bad input" if status == "failed" else None,
        "seconds": seconds or 0,
        "started": seconds is not None,
    }
    connection.execute(
        text(
            "INSERT INTO jobs (id, name, type, status, tenant, payload, failure_reason, "
            "created_at, started_at, completed_at) VALUES (:id, :name, :type, :status, :tenant, "
            "'{}', :reason, now() - interval '2 hours', "
            "CASE WHEN :started THEN now() - interval '1 hour' - :seconds * interval '1 second' "
            "END, now() - interval '1 hour')"
        ),
        row,
    )
    return job_id


def rows(sql: str) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        return [dict(r) for r in connection.execute(text(sql)).mappings()]


def test_daily_summary_counts_each_final_status_and_duration_percentiles() -> None:
    with db.engine().begin() as connection:
        for seconds in range(1, 21):  # 20 succeeded jobs lasting 1..20 s
            insert_job(connection, "succeeded", seconds)
        insert_job(connection, "failed", 30)
        insert_job(connection, "partial", 40)
        insert_job(connection, "canceled", None)  # never started: no duration
        insert_job(connection, "succeeded", 5, type="export")

    summary = {r["type"]: r for r in rows("SELECT * FROM report_daily_summary")}

    imports = summary["import"]
    assert (imports["total"], imports["succeeded"], imports["failed"]) == (23, 20, 1)
    assert (imports["partial"], imports["canceled"]) == (1, 1)
    # 22 timed jobs: 1..20, 30, 40 → nearest rank p50 = 11th = 11 s, p95 = 21st = 30 s
    assert float(imports["p50_seconds"]) == pytest.approx(11, abs=0.01)
    assert float(imports["p95_seconds"]) == pytest.approx(30, abs=0.01)
    assert summary["export"]["total"] == 1


def test_status_counts_per_tenant_and_type() -> None:
    with db.engine().begin() as connection:
        insert_job(connection, "succeeded", 1, tenant="acme")
        insert_job(connection, "succeeded", 1, tenant="acme")
        insert_job(connection, "failed", 1, tenant="globex")

    counts = {
        (r["tenant"], r["type"], r["status"]): r["jobs"]
        for r in rows("SELECT * FROM report_status_counts")
    }

    assert counts == {("acme", "import", "succeeded"): 2, ("globex", "import", "failed"): 1}


def test_recent_failures_carry_their_reasons() -> None:
    with db.engine().begin() as connection:
        failed = insert_job(connection, "failed", 3)
        insert_job(connection, "succeeded", 3)

    failures = rows("SELECT * FROM report_recent_failures")

    assert [(str(r["id"]), r["failure_reason"]) for r in failures] == [(str(failed), "bad input")]


def test_step_durations_of_a_chained_job() -> None:
    with db.engine().begin() as connection:
        job_id = insert_job(connection, "succeeded", 30, type="sync_and_suggest")
        for position, (step_type, seconds) in enumerate((("sync", 20), ("suggest", 8)), 1):
            connection.execute(
                text(
                    "INSERT INTO job_steps (id, job_id, position, step_type, status, started_at, "
                    "completed_at) VALUES (:id, :job, :position, :type, 'succeeded', "
                    "now() - :seconds * interval '1 second', now())"
                ),
                {
                    "id": str(uuid.uuid4()),
                    "job": str(job_id),
                    "position": position,
                    "type": step_type,
                    "seconds": seconds,
                },
            )

    steps = rows("SELECT * FROM report_step_durations ORDER BY position")

    assert [(r["step_type"], round(float(r["seconds"]))) for r in steps] == [
        ("sync", 20),
        ("suggest", 8),
    ]
    assert {r["job_type"] for r in steps} == {"sync_and_suggest"}


def test_daily_history_keeps_purged_days_through_the_rollups() -> None:
    with db.engine().begin() as connection:
        for seconds in (2, 4, 6):
            insert_job(connection, "succeeded", seconds)
        insert_job(connection, "failed", 8)
    before = rows("SELECT * FROM report_daily_history")
    assert [(r["source"], r["total"]) for r in before] == [("ledger", 4)]

    retention.purge(older_than_days=0)

    after = rows("SELECT * FROM report_daily_history")
    assert [(r["source"], r["total"], r["succeeded"], r["failed"]) for r in after] == [
        ("rollup", 4, 3, 1)
    ]
    assert after[0]["day"] == before[0]["day"]
    assert float(after[0]["p50_seconds"]) == pytest.approx(4, rel=0.06)


def test_reports_reads_every_view_by_name() -> None:
    with db.engine().begin() as connection:
        insert_job(connection, "failed", 3)

    assert reports.report("recent-failures")[0]["failure_reason"] == "bad input"
    for name in reports.REPORTS:
        reports.report(name)
    with pytest.raises(KeyError, match="known: status-counts"):
        reports.report("nope")


def test_the_views_exist_and_answer_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    upgrade(database_url=url)
    engine = create_engine(url)
    with engine.begin() as connection:
        for index, (status, seconds) in enumerate((("succeeded", 2), ("failed", 4))):
            connection.execute(
                text(
                    "INSERT INTO jobs (id, name, type, status, payload, failure_reason, "
                    "created_at, started_at, completed_at) VALUES (:id, :name, 'import', "
                    ":status, '{}', 'x', datetime('now', '-1 hour'), "
                    "datetime('now', '-1 hour'), datetime('now', '-1 hour', :plus))"
                ),
                {
                    "id": uuid.uuid4().hex,
                    "name": f"s{index}",
                    "status": status,
                    "plus": f"+{seconds} seconds",
                },
            )
        answers = {
            view: [dict(r) for r in connection.execute(text(f"SELECT * FROM {view}")).mappings()]
            for view in VIEWS
        }
    engine.dispose()

    summary = answers["report_daily_summary"][0]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (2, 1, 1)
    assert summary["p50_seconds"] == pytest.approx(2, abs=0.01)
    assert summary["p95_seconds"] == pytest.approx(4, abs=0.01)
    assert len(answers["report_recent_failures"]) == 1
    assert len(answers["report_status_counts"]) == 2
