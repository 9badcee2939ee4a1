"""``GET /metrics`` of a real API server after real jobs ran through a real worker, after
a lifeline pass and after a real purge job: every number equals what SQL on the ledger
says (the purged jobs still counted as finished), and a restarted API says the same."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

import tests.support.ops  # noqa: F401  (registers purge and lifeline in the workers)
from app import db
from app.api.auth import digest_of
from app.ledger import transitions as ledger
from app.ledger.operations import lifeline
from app.ledger.reads import trends
from app.ledger.reads.metrics import EDGES, le_of
from app.ledger.rules.durations import duration_bucket
from app.testing.workers import WorkerProcess
from tests.support import ledger as read
from tests.support.api_server import start_api_server
from tests.support.jobs import echo, fail, flaky
from tests.support.ops import backdate

SCRAPE_KEY = "scrape-" + uuid.uuid4().hex
Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


def scrape(tmp_path: Path) -> Samples:
    """Start an API server, read /metrics with the scrape key (refused without it), stop."""
    server = start_api_server(tmp_path, JOBLEDGER_METRICS_KEY=digest_of(SCRAPE_KEY))
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/metrics").status_code == 401
            wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            answer = client.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_KEY}"})
    finally:
        server.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return samples


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def finished_rows() -> list[dict[str, Any]]:
    """Every finished job with its durations and lifeline events, read with SQL."""
    with db.engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT j.id, j.tenant, j.type, j.status, j.attempts, j.lost_executions, "
                "extract(epoch FROM j.started_at - j.created_at)::float8 AS wait, "
                "extract(epoch FROM j.completed_at - j.started_at)::float8 AS run, "
                "(SELECT count(*) FROM job_events e WHERE e.job_id = j.id "
                " AND e.step_id IS NULL AND e.actor = 'lifeline') AS rescues "
                "FROM jobs j WHERE j.completed_at IS NOT NULL"
            )
        ).mappings()
        return [dict(row) for row in rows]


def shift_back(job_ids: list[str], days: float) -> None:
    """Move finished jobs ``days`` into the past, every stamp alike (test set-up)."""
    with db.engine().begin() as connection:
        connection.execute(
            text(
                "UPDATE jobs SET created_at = created_at - make_interval(secs => :s), "
                "started_at = started_at - make_interval(secs => :s), "
                "completed_at = completed_at - make_interval(secs => :s) WHERE id = ANY(:ids)"
            ),
            {"s": days * 86400, "ids": [uuid.UUID(i) for i in job_ids]},
        )


def test_metrics_after_jobs_a_lifeline_pass_and_a_purge_are_the_ledger_numbers(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    started = [
        *(echo.apply_async(kwargs={"value": n}, tenant="acme") for n in range(4)),
        *(echo.apply_async(kwargs={"value": n}) for n in range(3)),
        *(fail.apply_async(kwargs={"message": "boom"}, tenant="acme") for _ in range(2)),
        *(flaky.apply_async(kwargs={"failures": 1}, tenant="globex") for _ in range(2)),
    ]
    for job in started:
        read.wait_for_status(job.id, "succeeded", "failed", timeout=60)
    # an orphan: running on a worker that never heartbeats again; one lifeline pass fails it
    orphan = uuid.uuid4()
    ledger.record_queued(ledger.NewJob(id=orphan, type="example.echo", payload={"value": 1}))
    ledger.record_started(orphan, celery_task_id="gone", execution_id="gone", worker="w")
    backdate(orphan, 3600)
    assert str(orphan) in lifeline.run_once(timeout=600).failed
    # old jobs on both sides of the trend watermark: the purge finds some rolled up already
    ids = [job.id for job in started]
    shift_back(ids[:4], 3)
    shift_back(ids[4:8], 1.2)
    assert trends.settle(margin=timedelta(days=2)) == 4  # what settle_counts does, older
    before = finished_rows()

    from tasks.maintenance.purge import purge

    purged = read.wait_for_status(purge.delay(older_than_days=1).id, "succeeded", timeout=120)
    assert purged["result"]["deleted"] == 8
    after = finished_rows()
    assert len(after) == len(before) - 8 + 1  # the purge job itself finished since
    every = before + [row for row in after if row["id"] not in {r["id"] for r in before}]

    first, second = scrape(tmp_path), scrape(tmp_path)
    assert first == second  # another process, the same numbers: nothing kept in memory

    finished = Counter((r["tenant"], r["type"], r["status"]) for r in every)
    for (tenant, job_type, status), count in finished.items():
        key = labels(tenant=tenant, type=job_type, status=status)
        assert first["jobledger_jobs_finished_total"][key] == count
    assert sum(first["jobledger_jobs_finished_total"].values()) == len(every)

    with db.engine().connect() as connection:
        held = connection.execute(
            text("SELECT tenant, type, status, count(*) FROM jobs GROUP BY 1, 2, 3")
        ).all()
        write_retries = connection.execute(
            text("SELECT value FROM ledger_counters WHERE name = 'write_retries'")
        ).scalar_one()
    assert first["jobledger_jobs"] == {
        labels(tenant=t, type=k, status=s): float(n) for t, k, s, n in held
    }
    assert first["jobledger_live_jobs"] == {}  # nothing queued or running now
    assert first["jobledger_ledger_write_retries_total"] == {frozenset(): float(write_retries)}

    by_type: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in every:
        by_type[(row["tenant"], row["type"])].append(row)
    for (tenant, job_type), rows in by_type.items():
        key = labels(tenant=tenant, type=job_type)
        timed = [r for r in rows if r["run"] is not None]
        for name in ("wait", "run"):
            metric = f"jobledger_job_{'queue_wait' if name == 'wait' else 'run'}_seconds"
            assert first[f"{metric}_count"][key] == len(timed)
            assert abs(first[f"{metric}_sum"][key] - sum(r[name] for r in timed)) < 1e-3
            for edge in EDGES:
                in_bucket = sum(duration_bucket(r[name]) <= edge for r in timed)
                assert first[f"{metric}_bucket"][key | {("le", le_of(edge))}] == in_bucket
            assert first[f"{metric}_bucket"][key | {("le", "+Inf")}] == len(timed)
        for metric, column in (
            ("jobledger_job_retries_total", "attempts"),
            ("jobledger_job_lost_executions_total", "lost_executions"),
            ("jobledger_lifeline_rescues_total", "rescues"),
        ):
            expected = sum(
                max(0, r["attempts"] - 1) if column == "attempts" else r[column] for r in rows
            )
            assert first[metric][key] == expected
    assert first["jobledger_job_retries_total"][labels(tenant="globex", type="example.flaky")] == 2
    assert (
        first["jobledger_lifeline_rescues_total"][labels(tenant="default", type="example.echo")]
        == 1
    )

    assert first["jobledger_purge_running"] == {frozenset(): 0.0}
    assert first["jobledger_purge_progress_ratio"] == {frozenset(): 1.0}
    assert first["jobledger_purge_last_deleted_jobs"] == {frozenset(): 8.0}
    completed = purged["completed_at"].timestamp()
    assert first["jobledger_purge_last_success_timestamp_seconds"] == {frozenset(): completed}


def test_metrics_are_closed_unless_a_key_or_open_is_set(tmp_path: Path) -> None:
    server = start_api_server(tmp_path)
    try:
        closed = httpx.get(f"{server.url}/metrics", timeout=60)
    finally:
        server.stop()
    assert closed.status_code == 403
    assert "JOBLEDGER_METRICS_KEY" in closed.json()["detail"]
    server = start_api_server(tmp_path, JOBLEDGER_METRICS_OPEN="true")
    try:
        opened = httpx.get(f"{server.url}/metrics", timeout=60)
    finally:
        server.stop()
    assert opened.status_code == 200
    assert "jobledger_jobs_finished_total" in opened.text or "# HELP jobledger_jobs " in opened.text
