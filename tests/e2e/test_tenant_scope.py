"""Domain data is scoped by the job's tenant: two tenants with a budget (or dataset) of
the same name never read or write each other's rows, and an export holds the exporting
tenant's rows only. End to end: jobs created through the API with two tenants' keys (or
``apply_async(tenant=…)``), a real worker, Redis and PostgreSQL; the tables read with SQL.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.exceptions import InvalidPayload
from app.ledger import transitions as ledger
from app.ledger.runtime.task import HEADER
from tasks import export_data, import_data, suggest, sync, sync_and_suggest
from tests.support import api, domain
from tests.support.api import ACME, OTHER
from tests.support.jobs import echo
from tests.support.ledger import wait_for_status

# The export folder the session worker inherits (as tests/e2e/test_export.py sets it).
if "JOBLEDGER_EXPORT_DIR" not in os.environ:
    os.environ["JOBLEDGER_EXPORT_DIR"] = tempfile.mkdtemp(prefix="jobledger-exports-")
    import atexit

    atexit.register(shutil.rmtree, os.environ["JOBLEDGER_EXPORT_DIR"], ignore_errors=True)

pytestmark = pytest.mark.usefixtures("worker")

HEADER_ROW = ["id", "date", "payee", "amount", "category", "updated_at"]
#: The other tenant's budget: a categorized history and two uncategorized transactions.
OTHERS = [
    ["t1", "2024-01-02", "Coffee Shop 12", "-3.50", "Coffee", "2024-01-02T10:00:00"],
    ["t2", "2024-01-05", "Coffee Shop 31", "-4.10", "Coffee", "2024-01-05T10:00:00"],
    ["u1", "2024-02-03", "Coffee Shop 7", "-3.20", "", "2024-02-03T10:00:00"],
    ["u2", "2024-02-04", "coffee shop", "-2.80", "", "2024-02-04T10:00:00"],
]
#: Acme's budget of the same name: the same external ids, other payees and amounts, and
#: an uncategorized coffee of its own with no history in acme.
ACMES = [
    ["t1", "2024-03-01", "Bakery", "-9.99", "Food", "2024-03-01T10:00:00"],
    ["t2", "2024-03-02", "Bakery", "-1.00", "Food", "2024-03-02T10:00:00"],
    ["a1", "2024-03-03", "Coffee Shop 99", "-3.00", "", "2024-03-03T10:00:00"],
]


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


def post(client: TestClient, key: dict[str, str], job_type: str, payload: dict[str, Any]) -> str:
    response = client.post("/jobs", json={"type": job_type, "payload": payload}, headers=key)
    assert response.status_code == 202, response.text
    job_id = str(response.json()["id"])
    job = wait_for_status(job_id, "succeeded", "partial", "failed", "canceled", timeout=60)
    assert job["status"] == "succeeded", job["failure_reason"]
    return job_id


def rows_of_budget(budget: str) -> list[tuple[str, str, str]]:
    """``(external_id, payee, amount)`` of every transaction of the budget name, any tenant."""
    found = domain.query(
        "SELECT external_id, payee, amount FROM transactions WHERE budget_id = :b", b=budget
    )
    return sorted((r["external_id"], r["payee"], str(r["amount"])) for r in found)


def expected(records: list[list[str]]) -> list[tuple[str, str, str]]:
    return [(r[0], r[2], r[3]) for r in records]


def suggestion_rows(budget: str) -> list[dict[str, Any]]:
    """Suggestions of every tenant's budget of that name, with their transaction."""
    return domain.query(
        "SELECT s.id, s.job_id, s.status, t.external_id, t.payee "
        "FROM suggestions s JOIN transactions t ON t.id = s.transaction_id "
        "WHERE s.budget_id = :b ORDER BY s.id",
        b=budget,
    )


def suggestion_tenants(budget: str) -> set[tuple[str, str]]:
    """``(suggestion's tenant, its transaction's tenant)`` of the budget name."""
    rows = domain.query(
        "SELECT s.tenant, t.tenant AS of_tenant FROM suggestions s "
        "JOIN transactions t ON t.id = s.transaction_id WHERE s.budget_id = :b",
        b=budget,
    )
    return {(r["tenant"], r["of_tenant"]) for r in rows}


def test_a_sync_of_one_tenant_leaves_another_tenants_budget_of_the_same_name_alone(
    client: TestClient, tmp_path: Path
) -> None:
    budget = domain.unique("household")
    theirs = domain.write_csv(tmp_path / "theirs.csv", HEADER_ROW, OTHERS)
    mine = domain.write_csv(tmp_path / "mine.csv", HEADER_ROW, ACMES)
    post(client, OTHER, "sync", {"budget_id": budget, "source": str(theirs)})

    post(client, ACME, "sync", {"budget_id": budget, "source": str(mine)})

    # Both tenants' t1 and t2 exist side by side: acme's sync overwrote nothing.
    assert rows_of_budget(budget) == sorted(expected(OTHERS) + expected(ACMES))
    by_tenant = domain.query(
        "SELECT tenant, external_id, payee FROM transactions WHERE budget_id = :b", b=budget
    )
    assert sorted((r["external_id"], r["payee"]) for r in by_tenant if r["tenant"] == "other") == [
        (r[0], r[2]) for r in OTHERS
    ]
    cursors = domain.query("SELECT tenant FROM sync_cursors WHERE budget_id = :b", b=budget)
    assert sorted(r["tenant"] for r in cursors) == ["acme", "other"]


def test_a_suggest_of_one_tenant_leaves_another_tenants_suggestions_alone(
    client: TestClient, tmp_path: Path
) -> None:
    budget = domain.unique("household")
    theirs = domain.write_csv(tmp_path / "theirs.csv", HEADER_ROW, OTHERS)
    mine = domain.write_csv(tmp_path / "mine.csv", HEADER_ROW, ACMES)
    post(client, OTHER, "sync", {"budget_id": budget, "source": str(theirs)})
    their_suggest = post(client, OTHER, "suggest", {"budget_id": budget})
    before = suggestion_rows(budget)
    assert [(r["external_id"], r["status"]) for r in before] == [
        ("u1", "pending"),
        ("u2", "pending"),
    ]
    post(client, ACME, "sync", {"budget_id": budget, "source": str(mine)})

    my_suggest = post(client, ACME, "suggest", {"budget_id": budget})

    # The other tenant's pending suggestions are the same rows, by the same job.
    assert suggestion_rows(budget) == before
    assert {str(r["job_id"]) for r in before} == {their_suggest}
    assert suggestion_tenants(budget) == {("other", "other")}
    # And acme's suggest learnt nothing from the other tenant's coffee history.
    result = wait_for_status(my_suggest, "succeeded")["result"]
    assert (result["transactions_considered"], result["suggestions"]) == (1, 0)
    assert result["replaced_pending"] == 0


def test_the_chain_syncs_and_suggests_within_its_jobs_tenant(
    client: TestClient, tmp_path: Path
) -> None:
    budget = domain.unique("household")
    theirs = domain.write_csv(tmp_path / "theirs.csv", HEADER_ROW, OTHERS)
    mine = domain.write_csv(tmp_path / "mine.csv", HEADER_ROW, ACMES)
    post(client, OTHER, "sync_and_suggest", {"budget_id": budget, "source": str(theirs)})
    before = suggestion_rows(budget)

    parent = post(client, ACME, "sync_and_suggest", {"budget_id": budget, "source": str(mine)})

    assert rows_of_budget(budget) == sorted(expected(OTHERS) + expected(ACMES))
    assert suggestion_rows(budget) == before
    result = wait_for_status(parent, "succeeded")["result"]
    assert result["suggest"]["suggestions"] == 0
    assert suggestion_tenants(budget) == {("other", "other")}


def exported(job_id: str) -> list[dict[str, str]]:
    job = wait_for_status(job_id, "succeeded", "failed", timeout=60)
    assert job["status"] == "succeeded", job["failure_reason"]
    path = Path(job["result_url"].removeprefix("file://"))
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_of_job_logs_holds_the_log_lines_of_the_tenants_jobs_only() -> None:
    mine = echo.delay(value=1, tenant="acme").id
    theirs = echo.delay(value=2, tenant="other").id
    for job_id in (mine, theirs):
        wait_for_status(job_id, "succeeded")

    export = export_data.delay("ledger:job_logs", tenant="acme").id

    rows = exported(export)
    assert {row["job_id"] for row in rows} <= {str(mine), str(export)}
    assert "echo 1" in {row["message"] for row in rows}
    assert str(theirs) not in {row["job_id"] for row in rows}


def test_an_export_through_the_api_holds_the_keys_tenants_events_only(
    client: TestClient,
) -> None:
    theirs = post(client, OTHER, "example.echo", {"value": 2})
    mine = post(client, ACME, "example.echo", {"value": 1})

    export = post(client, ACME, "export", {"dataset": "ledger:job_events"})

    job_ids = {row["job_id"] for row in exported(export)}
    assert theirs not in job_ids
    assert job_ids == {mine, export}


def test_export_of_dataset_rows_holds_the_tenants_rows_only(tmp_path: Path) -> None:
    dataset = domain.unique("sales")
    for tenant in ("acme", "other"):
        source = domain.write_csv(tmp_path / f"{tenant}.csv", ["who"], [[tenant], [tenant]])
        job_id = import_data.delay(str(source), dataset, tenant=tenant).id
        assert wait_for_status(job_id, "succeeded", "failed")["status"] == "succeeded"

    rows = exported(export_data.delay("ledger:dataset_rows", tenant="acme").id)

    mine = [row for row in rows if row["data"] in ('{"who": "acme"}', '{"who": "other"}')]
    assert [row["data"] for row in mine] == ['{"who": "acme"}'] * 2
    assert {row["tenant"] for row in rows} == {"acme"}


def test_a_payload_naming_another_tenant_than_the_job_is_refused_at_delay() -> None:
    with pytest.raises(InvalidPayload) as refused:
        export_data.apply_async(kwargs={"dataset": "ledger:jobs", "tenant": "other"}, tenant="acme")

    assert list(refused.value.fields) == ["tenant"]
    assert "'other'" in refused.value.fields["tenant"]
    assert api.job_count() == 0


def test_a_left_out_payload_tenant_is_the_jobs_tenant() -> None:
    job_id = export_data.apply_async(kwargs={"dataset": "ledger:jobs"}, tenant="acme").id

    job = wait_for_status(job_id, "succeeded", "failed")
    assert (job["tenant"], job["payload"]["tenant"]) == ("acme", "acme")
    assert exported(job_id)
    assert f"{os.sep}acme{os.sep}" in job["result_url"]


def test_a_message_whose_payload_names_another_tenant_than_its_job_fails() -> None:
    theirs = echo.delay(value=2, tenant="other").id
    wait_for_status(theirs, "succeeded")
    # A job recorded for acme, whose message (published around delay()) claims "other".
    job_id = uuid.uuid4()
    ledger.record_queued(
        ledger.NewJob(
            id=job_id,
            type="export",
            payload={"dataset": "ledger:jobs", "tenant": "acme"},
            tenant="acme",
            celery_task_id=str(job_id),
        )
    )
    export_data.apply_async(
        kwargs={"dataset": "ledger:jobs", "format": "csv", "tenant": "other"},
        task_id=str(job_id),
        headers={HEADER: {"job_id": str(job_id)}},
    )

    job = wait_for_status(job_id, "succeeded", "failed")
    assert job["status"] == "failed"
    assert "field 'tenant'" in job["failure_reason"]
    assert "'other'" in job["failure_reason"]
    assert "'acme'" in job["failure_reason"]
    assert job["result_url"] is None


def test_a_relation_that_cannot_be_limited_to_a_tenant_is_not_exported() -> None:
    job = wait_for_status(export_data.delay("ledger:run_name_counters").id, "failed", "succeeded")

    assert job["status"] == "failed"
    assert "field 'dataset'" in job["failure_reason"]
    assert "neither a tenant nor a job_id column" in job["failure_reason"]


def test_sync_and_suggest_by_producers_take_the_tenant_option(tmp_path: Path) -> None:
    budget = domain.unique("household")
    source = domain.write_csv(tmp_path / "bank.csv", HEADER_ROW, OTHERS)

    for job_id in (
        sync.apply_async(args=(budget, str(source)), tenant="other").id,
        suggest.apply_async(args=(budget,), tenant="other").id,
        sync_and_suggest.apply_async(args=(budget, str(source)), tenant="other").id,
    ):
        assert wait_for_status(job_id, "succeeded", "failed", timeout=60)["status"] == "succeeded"

    tenants = domain.query(
        "SELECT DISTINCT tenant FROM transactions WHERE budget_id = :b "
        "UNION SELECT DISTINCT tenant FROM suggestions WHERE budget_id = :b",
        b=budget,
    )
    assert [r["tenant"] for r in tenants] == ["other"]
