"""``interface_run`` end to end: a file from the tenant's inbox imported, archived and
recorded (files processed, records imported, duration) through a real worker; the
retention purge keeps old runs unless it can archive them first."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.exceptions import InvalidPayload
from app.ledger.operations import actions as operations
from app.ledger.operations import retention
from app.ledger.transitions import request_cancel
from tasks import interface_run
from tasks.interface_run import tenant_area
from tasks.maintenance.purge import purge
from tests.conftest import INTERFACE_DIR
from tests.support import api, domain, ledger
from tests.support.api import ACME
from tests.support.jobs import echo
from tests.support.ledger import wait_for_status
from tests.support.ops import clean_rollups

pytestmark = pytest.mark.usefixtures("worker")

DONE = ("succeeded", "partial", "failed", "canceled")
COLUMNS = {"entry_id": "int", "hours": "decimal"}


@pytest.fixture(autouse=True)
def _empty_areas() -> Iterator[None]:
    shutil.rmtree(INTERFACE_DIR, ignore_errors=True)
    yield
    shutil.rmtree(INTERFACE_DIR, ignore_errors=True)


def inbox(tenant: str = "acme") -> Path:
    folder = tenant_area(tenant) / "inbox"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def timesheet(name: str, rows: int, bad: tuple[int, ...] = (), tenant: str = "acme") -> Path:
    data = [[str(i), "x" if i in bad else f"{i % 9}.5"] for i in range(1, rows + 1)]
    return domain.write_csv(inbox(tenant) / name, ["entry_id", "hours"], data)


def start(
    file: str, dataset: str, tenant: str = "acme", task_id: str | None = None, **more: Any
) -> str:
    return str(
        interface_run.apply_async(
            task_id=task_id,
            kwargs={
                "interface": "ta-in",
                "source": file,
                "dataset": dataset,
                "key": "entry_id",
                "columns": COLUMNS,
                **more,
            },
            tenant=tenant,
        ).id
    )


def test_a_run_imports_archives_and_records_its_metadata() -> None:
    source = timesheet("ts-2025-02.csv", 150)
    digest = domain.sha256_of(source)
    dataset = domain.unique("timesheets")

    job_id = start("ts-2025-02.csv", dataset)

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.count_rows(dataset, tenant="acme") == 150
    archived = tenant_area("acme") / "archive" / f"{job_id}-ts-2025-02.csv"
    assert not source.exists()
    assert domain.sha256_of(archived) == digest
    metadata = job["metadata"]
    assert metadata["files_processed"] == 1
    assert metadata["records_imported"] == 150
    assert 0 <= metadata["duration_seconds"] < 60
    assert metadata["archived_as"] == f"archive/{job_id}-ts-2025-02.csv"
    assert job["result"]["records_imported"] == 150
    assert job["subject"] == "ta-in"
    assert job["queue"] == "interfaces"
    (recorded,) = domain.files(job_id)
    assert (recorded["direction"], recorded["sha256"], recorded["records"]) == ("in", digest, 150)
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]


def test_bad_records_are_item_errors_and_the_file_is_still_archived() -> None:
    timesheet("ts-bad.csv", 20, bad=(3, 7))
    dataset = domain.unique("timesheets")

    job = wait_for_status(start("ts-bad.csv", dataset), *DONE)

    assert job["status"] == "partial"
    assert sorted((e["row"], e["field"]) for e in job["errors"]) == [(4, "hours"), (8, "hours")]
    assert job["metadata"]["records_imported"] == 18
    assert domain.count_rows(dataset, tenant="acme") == 18
    assert not (inbox() / "ts-bad.csv").exists()


def test_a_run_delivered_again_after_it_archived_imports_the_archived_copy() -> None:
    """Messages are acknowledged late: a worker that dies between the archive and the
    outcome leaves the file archived under the run's id and the job to be delivered
    again. That state is laid out here (the file in ``archive/<job id>-…``, none in the
    inbox) and the run delivered under that id: it imports the archived copy, archives
    nothing twice and records its metadata."""
    job_id = str(uuid.uuid4())
    archive = tenant_area("acme") / "archive"
    archive.mkdir(parents=True)
    shutil.move(timesheet("ts-again.csv", 30), archive / f"{job_id}-ts-again.csv")
    dataset = domain.unique("timesheets")

    start("ts-again.csv", dataset, task_id=job_id)

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.count_rows(dataset, tenant="acme") == 30
    assert job["metadata"]["records_imported"] == 30
    assert job["metadata"]["archived_as"] == f"archive/{job_id}-ts-again.csv"
    assert os.listdir(archive) == [f"{job_id}-ts-again.csv"]
    assert any("archived by an earlier delivery" in line for line in domain.logs(job_id))


@pytest.mark.parametrize(
    ("file", "field"),
    [("../acme/inbox/x.csv", "source"), ("/etc/passwd", "source"), (".hidden.csv", "source")],
)
def test_a_file_that_is_not_a_plain_name_is_refused_at_delay(file: str, field: str) -> None:
    before = api.job_count()

    with pytest.raises(InvalidPayload) as refused:
        interface_run.delay(interface="ta-in", source=file, dataset="d")

    assert field in refused.value.fields
    assert api.job_count() == before


def test_a_symlink_out_of_the_inbox_is_refused_and_nothing_is_read(tmp_path: Path) -> None:
    secret = domain.write_csv(tmp_path / "secret.csv", ["entry_id", "hours"], [["1", "2"]])
    (inbox() / "link.csv").symlink_to(secret)
    dataset = domain.unique("timesheets")

    job = wait_for_status(start("link.csv", dataset), *DONE)

    assert job["status"] == "failed"
    assert job["failure_reason"] == (
        "field 'source': 'link.csv' leads outside the tenant's inbox (a symlink?): "
        "refused, not read"
    )
    assert domain.count_rows(dataset, tenant="acme") == 0
    assert (inbox() / "link.csv").is_symlink()  # not archived
    assert secret.exists()


def test_a_missing_file_fails_and_another_tenants_inbox_is_not_looked_in() -> None:
    timesheet("theirs.csv", 5, tenant="globex")

    job = wait_for_status(start("theirs.csv", domain.unique("t")), *DONE)

    assert job["status"] == "failed"
    assert "field 'source': no file 'theirs.csv' in the tenant's inbox" in job["failure_reason"]
    assert (inbox("globex") / "theirs.csv").exists()


def test_a_file_no_row_of_which_imports_fails_and_stays_in_the_inbox() -> None:
    timesheet("all-bad.csv", 3, bad=(1, 2, 3))
    dataset = domain.unique("timesheets")

    job = wait_for_status(start("all-bad.csv", dataset), *DONE)

    assert job["status"] == "failed"
    assert "all 3 rows failed" in job["failure_reason"]
    assert (inbox() / "all-bad.csv").exists()
    assert "files_processed" not in (job["metadata"] or {})


def test_cancel_mid_run_keeps_the_file_in_the_inbox_and_a_retry_finishes() -> None:
    """Once a first batch is in, the test locks ``dataset_rows``: the run waits at its next
    batch's write (after that batch's cancel check), so it is mid-run, and cannot finish,
    when the cancel comes; the batch after it sees the cancel."""
    timesheet("big.csv", 10_000)
    dataset = domain.unique("timesheets")
    job_id = start("big.csv", dataset, batch_size=100)
    domain.wait_until(
        lambda: ((ledger.job(job_id) or {}).get("metadata") or {}).get("rows_committed", 0) > 0,
        "a first batch committed",
    )
    with domain.table_locked("dataset_rows"):
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="test cancel") == "requested"
    job = wait_for_status(job_id, *DONE, timeout=60)

    assert job["status"] == "canceled"
    assert (inbox() / "big.csv").exists()
    kept = job["metadata"]["rows_committed"]
    assert 0 < kept < 10_000
    assert domain.count_rows(dataset, tenant="acme") == kept
    assert "files_processed" not in job["metadata"]

    operations.retry(uuid.UUID(job_id), actor="cli")
    again = wait_for_status(job_id, "succeeded", "partial", "failed", timeout=90)
    assert again["status"] == "succeeded", again["failure_reason"]
    assert domain.count_rows(dataset, tenant="acme") == 10_000
    assert not (inbox() / "big.csv").exists()


def backdate(job_id: str, days: int = 40) -> None:
    """Move a finished job's times ``days`` back (the purge's clock is the database's)."""
    domain.execute(
        "UPDATE jobs SET created_at = created_at - make_interval(days => :days), "
        "started_at = started_at - make_interval(days => :days), "
        "completed_at = completed_at - make_interval(days => :days) "
        "WHERE id = :id",
        id=job_id,
        days=days,
    )


def test_the_purge_keeps_old_runs_without_an_archive_and_archives_them_with_one(
    tmp_path: Path,
) -> None:
    """A real purge, twice: the workers' ``purge`` job, with no archive configured, keeps
    the old interface run (and counts and logs it as kept) while an old job of another
    type goes; a purge with an archive writes the run there, then deletes it."""
    clean_rollups()
    timesheet("old.csv", 5)
    run_id = start("old.csv", domain.unique("timesheets"))
    echo_id = echo.apply_async(kwargs={"value": 3}, tenant="acme").id
    assert wait_for_status(run_id, *DONE)["status"] == "succeeded"
    assert wait_for_status(echo_id, *DONE)["status"] == "succeeded"
    backdate(run_id)
    backdate(echo_id)

    purge_id = purge.apply_async(kwargs={"older_than_days": 30}).id  # the workers' purge
    kept = wait_for_status(purge_id, *DONE)

    assert kept["status"] == "succeeded", kept["failure_reason"]
    assert ledger.job(run_id) is not None
    assert ledger.job(echo_id) is None
    assert kept["result"]["kept_unarchived"] == 1
    assert kept["result"]["deleted"] == 1
    assert any("set JOBLEDGER_ARCHIVE_DIR" in line for line in domain.logs(purge_id))

    archived = retention.purge(older_than_days=30, archive_dir=tmp_path, pause_factor=0)

    assert ledger.job(run_id) is None
    assert archived.deleted == archived.archived == 1
    lines = [
        json.loads(line)
        for path in archived.archive_files
        for line in gzip.decompress(Path(path).read_bytes()).splitlines()
    ]
    assert [line["job"]["id"] for line in lines] == [run_id]
    assert lines[0]["job"]["metadata"]["files_processed"] == 1
    assert [e["to_status"] for e in lines[0]["events"]] == ["queued", "running", "succeeded"]


def test_through_the_api_a_run_reads_the_keys_tenants_inbox_only() -> None:
    timesheet("api.csv", 12)
    timesheet("api.csv", 3, tenant="other")
    dataset = domain.unique("timesheets")
    payload = {"interface": "ta-in", "source": "api.csv", "dataset": dataset}
    with TestClient(api.create_app(api.keyring())) as client:
        refused = client.post(
            "/jobs",
            json={"type": "interface_run", "payload": {**payload, "tenant": "other"}},
            headers=ACME,
        )
        bad = client.post(
            "/jobs",
            json={"type": "interface_run", "payload": {**payload, "source": "../x.csv"}},
            headers=ACME,
        )
        made = client.post(
            "/jobs", json={"type": "interface_run", "payload": payload}, headers=ACME
        )

    assert refused.status_code == 403
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["detail"]] == ["payload.source"]
    assert made.status_code == 202, made.text
    job = wait_for_status(made.json()["id"], *DONE)
    assert (job["tenant"], job["status"]) == ("acme", "succeeded")
    assert job["metadata"]["records_imported"] == 12
    assert domain.count_rows(dataset, tenant="acme") == 12
    assert domain.count_rows(dataset, tenant="other") == 0
    assert (inbox("other") / "api.csv").exists()  # the other tenant's file untouched
