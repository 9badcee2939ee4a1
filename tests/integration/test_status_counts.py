"""Settled status counts (``app.ledger.reads.counts``) always equal a naive count of ``jobs``:
after settling, purging, retrying, cascades, with tenant and ``since`` filters, and while
settles race the operations that take settled jobs back out."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from app import db
from app.ledger import transitions as ledger
from app.ledger.operations.retention import purge
from app.ledger.reads import counts, reports
from app.ledger.rules.states import normalize
from tests.support import ledger as read


def naive(tenant: str | None = None, since: datetime | None = None) -> dict[tuple[str, str], int]:
    """What ``count(*) … GROUP BY type, status`` says."""
    with db.engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT type, status, count(*) FROM jobs "
                "WHERE (CAST(:t AS text) IS NULL OR tenant = :t) "
                "AND (CAST(:s AS timestamptz) IS NULL OR created_at >= :s) "
                "GROUP BY type, status"
            ),
            {"t": tenant, "s": since},
        )
        return {(r[0], r[1]): r[2] for r in rows}


def counted(tenant: str | None = None, since: datetime | None = None) -> dict[tuple[str, str], int]:
    """What the settled counts say, through the module every reader uses."""
    return {
        (r.type, r.status): int(r.jobs) for r in counts.status_counts(tenant=tenant, since=since)
    }


def settled_jobs() -> int:
    """Jobs in the settled counts; the hours and the totals must agree."""
    hours = read.count("SELECT coalesce(sum(jobs), 0) FROM job_status_counts")
    assert read.count("SELECT coalesce(sum(jobs), 0) FROM job_status_totals") == hours
    return hours


def new_job(
    status: str, *, tenant: str = "default", job_type: str = "example.echo", **extra: Any
) -> uuid.UUID:
    """A job walked through the ledger to ``status``."""
    job_id = uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(
            id=job_id,
            type=job_type,
            payload={},
            tenant=tenant,
            celery_task_id=str(job_id),
            **extra,
        )
    )
    if status == "queued":
        return job_id
    if status == "canceled":
        ledger.request_cancel(job_id, actor="cli", reason="not needed")
        return job_id
    ledger.record_started(job_id, celery_task_id=str(job_id), execution_id="e", worker="w")
    if status == "succeeded":
        ledger.record_finished(job_id, execution_id="e", result=None)
    elif status == "partial":
        ledger.record_finished(job_id, execution_id="e", result=None, errors=[{"row": 1}])
    elif status == "failed":
        ledger.record_failed(job_id, reason="boom", execution_id="e")
    return job_id


def age(job_ids: list[uuid.UUID], by: timedelta) -> None:
    """Move jobs back in time, every stamp alike (test set-up, not a ledger path)."""
    with db.engine().begin() as connection:
        connection.execute(
            text(
                "UPDATE jobs SET created_at = created_at - :d, started_at = started_at - :d, "
                "completed_at = completed_at - :d WHERE id = ANY(:ids)"
            ),
            {"d": by, "ids": job_ids},
        )


STATUSES = ("queued", "running", "succeeded", "partial", "failed", "canceled")


def mixed_ledger(per_status: int = 3) -> list[uuid.UUID]:
    """Jobs of two tenants and two types in every status, aged 0 to 50 hours."""
    made = []
    for n in range(per_status):
        for status in STATUSES:
            tenant = "acme" if n % 2 else "default"
            job_type = "example.echo" if n % 3 else "example.other"
            job_id = new_job(status, tenant=tenant, job_type=job_type)
            age([job_id], timedelta(hours=n * 17, minutes=n * 7))
            made.append(job_id)
    return made


def test_before_any_settle_the_counts_are_the_naive_counts() -> None:
    mixed_ledger()
    assert counted() == naive()
    assert settled_jobs() == 0


def test_settling_moves_finished_jobs_into_the_counts_and_keeps_them_exact() -> None:
    mixed_ledger()
    settled = counts.settle()
    finished = read.count(
        "SELECT count(*) FROM jobs WHERE completed_at < now() - interval '1 minute'"
    )
    assert settled == finished > 0
    assert settled_jobs() == finished
    assert counted() == naive()
    assert counted(tenant="acme") == naive(tenant="acme")


def test_a_second_settle_adds_nothing() -> None:
    mixed_ledger()
    counts.settle()
    before = counted()
    assert counts.settle() == 0
    assert counted() == before == naive()


def test_jobs_finished_after_a_settle_are_counted_from_the_table() -> None:
    mixed_ledger()
    counts.settle()
    new_job("succeeded")
    new_job("failed")
    assert counted() == naive()


def test_the_since_filter_is_exact_inside_an_hour() -> None:
    mixed_ledger(per_status=4)
    counts.settle()
    now = datetime.now(UTC)
    for since in (now - timedelta(hours=20, minutes=13, seconds=5), now - timedelta(hours=34)):
        assert counted(since=since) == naive(since=since)
        assert counted(tenant="acme", since=since) == naive(tenant="acme", since=since)
    aligned = (now - timedelta(hours=17)).replace(minute=0, second=0, microsecond=0)
    assert counted(since=aligned) == naive(since=aligned)


def test_a_settled_job_retried_by_hand_leaves_the_settled_counts() -> None:
    failed = new_job("failed")
    age([failed], timedelta(hours=3))
    counts.settle()
    assert settled_jobs() == 1
    assert ledger.record_requeued(failed, celery_task_id=str(uuid.uuid4()), actor="cli")
    assert settled_jobs() == 0
    assert counted() == naive() == {("example.echo", "queued"): 1}


def test_purged_jobs_leave_the_settled_counts() -> None:
    mixed_ledger()
    old = [new_job("succeeded") for _ in range(5)]
    age(old, timedelta(days=40))
    counts.settle()
    result = purge(older_than_days=30)
    assert result.deleted == 5
    assert counted() == naive()


def test_a_child_job_deleted_by_cascade_leaves_the_settled_counts() -> None:
    parent = new_job("succeeded")
    child = new_job("succeeded", parent_job_id=parent)
    age([parent, child], timedelta(days=40))
    counts.settle()
    assert settled_jobs() == 2
    with db.engine().begin() as connection:  # what any delete of a parent does
        connection.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": parent})
    assert read.job(child) is None
    assert settled_jobs() == 0
    assert counted() == naive() == {}


def test_rebuild_recounts_everything() -> None:
    mixed_ledger()
    counts.settle()
    with db.engine().begin() as connection:  # drift, however it came about
        connection.execute(text("UPDATE job_status_counts SET jobs = jobs + 100"))
        connection.execute(text("UPDATE job_status_totals SET jobs = jobs + 100"))
    since = datetime.now(UTC) - timedelta(days=3)
    assert counted() != naive()
    assert counted(since=since) != naive(since=since)
    counts.rebuild()
    assert counted() == naive()
    assert counted(since=since) == naive(since=since)


def test_stats_reads_the_settled_counts() -> None:
    mixed_ledger()
    counts.settle()
    result = reports.stats()
    expected = naive()
    assert result["total"] == sum(expected.values())
    for status in STATUSES:
        assert result["by_status"][status] == sum(
            n for (_, s), n in expected.items() if s == status
        )


def test_settles_racing_retries_and_deletes_keep_the_counts_exact() -> None:
    """Rebuilds and settles in one thread; manual retries (a settled job leaves its final
    status) and deletes (the purge's statement) in two others, all on the same jobs."""
    jobs = [new_job(random.choice(("failed", "canceled", "succeeded"))) for _ in range(120)]
    age(jobs, timedelta(hours=2))
    retryable = [
        j
        for j in jobs
        if read.job(j)["status"] in ("failed", "canceled")  # type: ignore[index]
    ]
    deletable = [j for j in jobs if j not in retryable]
    errors: list[BaseException] = []
    done = threading.Event()

    def settling() -> None:
        while not done.is_set():
            counts.rebuild()
            counts.settle()

    def retrying() -> None:
        for job_id in retryable:
            ledger.record_requeued(job_id, celery_task_id=str(uuid.uuid4()), actor="cli")

    def deleting() -> None:
        for job_id in deletable:
            with db.engine().begin() as connection:
                connection.execute(text("DELETE FROM jobs WHERE id = :id"), {"id": job_id})

    def guarded(work: Any) -> Any:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported below, not lost in the thread
                errors.append(error)

        return run

    settler = threading.Thread(target=guarded(settling))
    workers = [threading.Thread(target=guarded(w)) for w in (retrying, deleting)]
    settler.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    done.set()
    settler.join(60)
    assert not errors
    assert read.count("SELECT count(*) FROM jobs") == len(retryable)
    assert counted() == naive() == {("example.echo", "queued"): len(retryable)}
    assert settled_jobs() == 0


def test_list_totals_come_from_the_counts_and_match_the_rows() -> None:
    mixed_ledger(per_status=4)
    counts.settle()
    since = datetime.now(UTC) - timedelta(hours=20, minutes=3)
    for filters in (
        reports.JobFilter(),
        reports.JobFilter(status=("DONE", "failed")),  # vocabularies are mapped
        reports.JobFilter(type="example.other", tenant="acme"),
        reports.JobFilter(status=("queued",), since=since),
        reports.JobFilter(subject="nothing-has-this-subject"),
    ):
        assert reports_rows(filters) == sum(  # the reference itself, against the table
            n
            for (t, st), n in naive(filters.tenant, filters.since).items()
            if (not filters.type or t == filters.type)
            and (not filters.status or st in {normalize(x).value for x in filters.status})
            and not filters.subject
        )
        assert reports.count_jobs(filters) == reports_rows(filters)


def reports_rows(filters: reports.JobFilter) -> int:
    """Every row the list shows (the test ledger fits in one page): what totals must say."""
    listed = reports.list_jobs(filters, limit=500, page=1)
    assert not listed.has_more
    return len(listed.items)
