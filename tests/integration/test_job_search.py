"""The console's search (app/ledger/reads/job_search.py) on each engine: every filter,
the sorts, and a tenant's search never showing another tenant's jobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest

from app.db import engine
from app.ledger import definitions
from app.ledger import transitions as ledger
from app.ledger.operations import bulk
from app.ledger.reads import job_search
from app.ledger.reads.job_search import JobFilter
from app.ledger.reads.reports import database_now
from tests.support.engines import each_engine  # noqa: F401  (the fixture, by name)

pytestmark = pytest.mark.usefixtures("each_engine")


@dataclass
class Jobs:
    queued: uuid.UUID
    running: uuid.UUID
    failed: uuid.UUID
    succeeded: uuid.UUID
    canceled: uuid.UUID
    of_definition: uuid.UUID
    other_tenant: uuid.UUID


def new_job(
    job_type: str = "example.echo",
    *,
    tenant: str = "acme",
    subject: str | None = None,
    queue: str = "default",
    definition_id: uuid.UUID | None = None,
) -> uuid.UUID:
    job_id = uuid.uuid4()
    assert ledger.record_queued(
        ledger.NewJob(
            id=job_id,
            type=job_type,
            payload={"value": 1},
            tenant=tenant,
            subject=subject,
            celery_task_id=str(job_id),
            queue=queue,
            definition_id=definition_id,
        )
    )
    return job_id


def run_on(job_id: uuid.UUID, worker: str) -> None:
    started = ledger.record_started(
        job_id, celery_task_id=str(job_id), execution_id=str(job_id), worker=worker
    )
    assert started.run, started


@pytest.fixture
def made() -> Jobs:
    nightly = definitions.create(
        tenant="acme",
        name="nightly",
        type="example.echo",
        payload={"value": 1},
        actor="cli",
        changed_by="test",
    )
    queued = new_job(subject="budget-7", queue="imports")
    running = new_job("example.gated", queue="imports")
    run_on(running, "celery@alpha")
    failed = new_job("example.fail", subject="dataset-9")
    run_on(failed, "celery@beta")
    assert ledger.record_failed(  # its retry policy's last attempt: dead
        failed,
        reason="Connection TIMEOUT at row 3",
        execution_id=str(failed),
        retries_exhausted=True,
    )
    succeeded = new_job()
    run_on(succeeded, "celery@alpha")
    assert ledger.record_finished(succeeded, execution_id=str(succeeded), result={"ok": 1})
    canceled = new_job()
    assert ledger.request_cancel(canceled, actor="api", reason="not needed") == "canceled"
    of_definition = new_job(definition_id=nightly.id)
    other = new_job("example.fail", tenant="other", subject="budget-7", queue="imports")
    run_on(other, "celery@alpha")
    assert ledger.record_failed(other, reason="connection timeout", execution_id=str(other))
    return Jobs(queued, running, failed, succeeded, canceled, of_definition, other)


def found(**fields: object) -> set[uuid.UUID]:
    wanted = JobFilter(**{"tenant": "acme", **fields})  # type: ignore[arg-type]
    ids = {uuid.UUID(str(row["id"])) for row in job_search.search(wanted, limit=500).items}
    assert job_search.count(wanted) == len(ids)
    return ids


def test_each_filter_finds_exactly_its_jobs_of_the_tenant(made: Jobs) -> None:
    every = {
        made.queued,
        made.running,
        made.failed,
        made.succeeded,
        made.canceled,
        made.of_definition,
    }
    assert found() == every
    assert found(statuses=("failed",)) == {made.failed}
    assert found(statuses=("failed", "Cancelled")) == {made.failed, made.canceled}
    assert found(types=("example.gated", "example.fail")) == {made.running, made.failed}
    assert found(queues=("imports",)) == {made.queued, made.running}
    assert found(definition="nightly") == {made.of_definition}
    assert found(definition="no-such") == set()
    assert found(worker="celery@alpha") == {made.running, made.succeeded}
    assert found(dead=True) == {made.failed}
    assert found(subject="budget-7") == {made.queued}
    assert found(tenant="other") == {made.other_tenant}
    assert found(tenant=None) == every | {made.other_tenant}  # the CLI's every-tenant view


def test_q_matches_id_run_name_subject_and_failure_text(made: Jobs) -> None:
    assert found(text="timeout") == {made.failed}  # case-insensitive, never the other tenant's
    assert found(text="BUDGET-") == {made.queued}
    assert found(text=str(made.succeeded)) == {made.succeeded}
    with engine().connect() as connection:
        name = (
            connection.execute(
                job_search.jobs.select().where(job_search.jobs.c.id == made.canceled)
            )
            .one()
            .name
        )
        # jobs made in the same second are named <second>_1, _2…: a prefix finds them too
        named_so = {
            row.id
            for row in connection.execute(
                job_search.jobs.select().where(
                    job_search.jobs.c.tenant == "acme", job_search.jobs.c.name.startswith(name)
                )
            )
        }
    assert made.canceled in named_so
    assert found(text=name) == named_so
    assert found(text=name[:8]) == found()  # a run name prefix: that day's runs
    assert found(text="100%_") == set()  # LIKE wildcards are taken literally


def test_the_date_range_is_created_after_inclusive_and_before_exclusive(made: Jobs) -> None:
    with engine().connect() as connection:
        now = database_now(connection)
    later = new_job()

    assert later in found(created_after=now)
    assert made.queued not in found(created_after=now + timedelta(minutes=5))
    assert found(created_before=now - timedelta(days=1)) == set()
    assert later not in found(created_after=now - timedelta(hours=1), created_before=now)


def test_sorts_by_created_finished_and_duration_each_way(made: Jobs) -> None:
    def ordered(sort: str) -> list[dict[str, object]]:
        wanted = JobFilter(tenant="acme", sort=sort)  # type: ignore[arg-type]
        return job_search.search(wanted, limit=500).items

    newest = ordered("-created")
    assert [row["id"] for row in newest] == [row["id"] for row in reversed(ordered("created"))]
    assert [row["created_at"] for row in newest] == sorted(
        (row["created_at"] for row in newest), reverse=True
    )
    # finished: the failed, succeeded and canceled jobs; a duration: the two that ran
    for key, column, how_many in (("finished", "completed_at", 3), ("duration", "duration", 2)):
        for descending in (False, True):
            rows = ordered(("-" if descending else "") + key)
            values = [row[column] for row in rows]
            known = [value for value in values if value is not None]
            assert len(known) == how_many
            assert values[: len(known)] == known  # unfinished ones last
            assert known == sorted(known, reverse=descending)  # type: ignore[type-var]


def test_a_bad_filter_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^status: "):
        JobFilter(tenant="acme", statuses=("exploded",))
    with pytest.raises(ValueError, match=r"^sort: "):
        JobFilter(tenant="acme", sort="size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^tenant: "):
        JobFilter(tenant="")
    with pytest.raises(ValueError, match=r"^tenant: a bulk operation acts on one tenant"):
        bulk.run("cancel", JobFilter(tenant=None), "all", "me")
    with pytest.raises(ValueError, match=r"^created_after: "):
        JobFilter.from_query("acme", {"created_after": "yesterday"})
    with pytest.raises(ValueError, match=r"^colour: unknown filter"):
        JobFilter.from_query("acme", {"colour": "red"})


def test_a_filter_reads_back_from_its_query_names() -> None:
    wanted = JobFilter.from_query(
        "acme",
        {"q": "x", "status": "failed,canceled", "type": ["a"], "dead": True, "sort": "-finished"},
    )
    assert wanted.statuses == ("failed", "canceled")
    assert JobFilter.from_query("acme", wanted.as_query()) == wanted
