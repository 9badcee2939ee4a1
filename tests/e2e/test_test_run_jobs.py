"""``test_run`` end to end: scenarios over datasets and previous jobs, through a real worker;
pass/fail per case in the ledger, a failing case ``partial``, a case that cannot run
``failed``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from app.exceptions import InvalidPayload
from app.ledger.transitions import request_cancel
from tasks import import_data
from tasks.test_run import test_run as scenario
from tests.support import api, domain, ledger
from tests.support.ledger import wait_for_status

pytestmark = pytest.mark.usefixtures("worker")

DONE = ("succeeded", "partial", "failed", "canceled")


def run(checks: list[dict[str, Any]], tenant: str = "acme") -> dict[str, Any]:
    job_id = scenario.apply_async(kwargs={"scenario": "fat-1", "checks": checks}, tenant=tenant).id
    return wait_for_status(job_id, *DONE)


@pytest.fixture
def tags(tmp_path: Path) -> tuple[str, str]:
    """A keyed dataset of tenant acme and the id of the import job that wrote it."""
    dataset = domain.unique("tags")
    source = domain.write_csv(
        tmp_path / "tags.csv",
        ["tag", "status", "rated_kw"],
        [["P-101", "ready", "12.50"], ["P-102", "open", "3"], ["P-103", "ready", "7"]],
    )
    job_id = import_data.apply_async(
        kwargs={"source": str(source), "dataset": dataset, "key": "tag"}, tenant="acme"
    ).id
    assert wait_for_status(job_id, *DONE)["status"] == "succeeded"
    return dataset, job_id


def test_every_case_passing_succeeds_with_a_verdict_per_case(tags: tuple[str, str]) -> None:
    dataset, import_id = tags

    job = run(
        [
            {"check": "job_succeeded", "job": import_id, "name": "tags imported"},
            {"check": "row_count", "dataset": dataset, "min": 1, "max": 3},
            {
                "check": "field_value",
                "dataset": dataset,
                "key": "P-101",
                "field": "rated_kw",
                "equals": 12.5,
            },
            {
                "check": "field_value",
                "dataset": dataset,
                "row": 2,
                "field": "status",
                "equals": "open",
            },
            {"check": "job_result", "job": import_id, "path": "records_imported", "equals": 3},
        ]
    )

    assert job["status"] == "succeeded", job["failure_reason"]
    result = job["result"]
    assert (result["passed"], result["failed"]) == (5, 0)
    assert [c["name"] for c in result["cases"]] == [
        "tags imported",
        "2. row_count",
        "3. field_value",
        "4. field_value",
        "5. job_result",
    ]
    assert all(c["passed"] and c["reason"] == "passed" for c in result["cases"])
    assert job["subject"] == "fat-1"
    assert job["queue"] == "tests"


def test_a_failing_case_makes_the_job_partial_and_the_others_still_run(
    tags: tuple[str, str],
) -> None:
    dataset, import_id = tags
    job = run(
        [
            {"check": "row_count", "dataset": dataset, "min": 10},
            {
                "check": "field_value",
                "dataset": dataset,
                "key": "P-102",
                "field": "status",
                "equals": "ready",
            },
            {
                "check": "field_value",
                "dataset": dataset,
                "key": "P-999",
                "field": "status",
                "equals": "ready",
            },
            {"check": "job_result", "job": import_id, "path": "no.such", "equals": 1},
            {"check": "job_succeeded", "job": import_id},
        ]
    )

    assert job["status"] == "partial", job["failure_reason"]
    verdicts = [(c["passed"], c["reason"]) for c in job["result"]["cases"]]
    assert [passed for passed, _ in verdicts] == [False, False, False, False, True]
    assert "below the minimum 10" in verdicts[0][1]
    assert "'open' is not 'ready'" in verdicts[1][1]
    assert "no row with key 'P-999'" in verdicts[2][1]
    assert "no result value at 'no.such'" in verdicts[3][1]
    assert [(e["case"], e["check"]) for e in job["errors"]] == [
        (0, "row_count"),
        (1, "field_value"),
        (2, "field_value"),
        (3, "job_result"),
    ]
    assert (job["result"]["passed"], job["result"]["failed"]) == (1, 4)


def test_a_previous_job_that_did_not_succeed_fails_its_case_saying_how_it_ended(
    tags: tuple[str, str], tmp_path: Path
) -> None:
    bad = import_data.apply_async(
        kwargs={"source": str(tmp_path / "missing.csv"), "dataset": "x"}, tenant="acme"
    ).id
    wait_for_status(bad, *DONE)

    job = run([{"check": "job_succeeded", "job": bad}])

    assert job["status"] == "partial"
    (case,) = job["result"]["cases"]
    assert case["passed"] is False
    assert "is failed, not succeeded: source file not found" in case["reason"]


def test_a_case_that_cannot_run_fails_the_job_naming_it(tags: tuple[str, str]) -> None:
    dataset, _ = tags

    job = run(
        [
            {"check": "row_count", "dataset": dataset, "min": 1},
            {"check": "row_count", "dataset": "nowhere", "min": 1, "name": "orders loaded"},
            {"check": "row_count", "dataset": dataset, "min": 1},
        ]
    )

    assert job["status"] == "failed"
    assert job["failure_reason"] == (
        "case 'orders loaded' could not run: field 'checks[1].dataset': "
        "dataset 'nowhere' does not exist"
    )
    assert job["result"] is None
    assert [e.get("field") for e in job["errors"]] == ["checks[1].dataset"]
    assert not any("3. row_count" in line for line in domain.logs(job["id"]))


def test_another_tenants_job_looks_exactly_like_a_missing_one(tags: tuple[str, str]) -> None:
    _, import_id = tags  # acme's
    missing = str(uuid.uuid4())

    theirs = run([{"check": "job_succeeded", "job": import_id}], tenant="globex")
    nobodys = run([{"check": "job_succeeded", "job": missing}], tenant="globex")

    assert theirs["status"] == nobodys["status"] == "failed"
    assert theirs["failure_reason"].replace(import_id, "<id>") == nobodys["failure_reason"].replace(
        missing, "<id>"
    )
    assert theirs["errors"][0]["message"].replace(import_id, "<id>") == nobodys["errors"][0][
        "message"
    ].replace(missing, "<id>")
    assert "not found" in theirs["failure_reason"]


def test_bad_checks_are_refused_at_delay_and_write_nothing() -> None:
    before = api.job_count()

    with pytest.raises(InvalidPayload) as refused:
        scenario.delay(
            scenario="fat-1",
            checks=[
                {"check": "row_count", "dataset": "d", "min": 1},
                {"check": "field_value", "dataset": "d", "field": "f", "equals": 1},
            ],
        )

    assert list(refused.value.fields) == ["checks[1].row"]
    assert api.job_count() == before


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"check": "row_count", "dataset": "d", "equals": _nested(5000)}, "checks.0.equals"),
        ({"check": "row_count", "dataset": "d", "equals": "x" * 10_000_000}, "checks.0.equals"),
        ({"check": "row_count", "dataset": "d", "equals": list(range(300_000))}, "checks.0.equals"),
        ({"check": "job_succeeded", "job": "j" * 10_000_000}, "checks.0.job"),
        (
            {"check": "field_value", "dataset": "d", "field": "f", "row": 2**63, "equals": 1},
            "checks.0.row",
        ),
    ],
    ids=["deeply-nested-equals", "huge-equals", "long-list-equals", "overlong-job", "huge-row"],
)
def test_hostile_checks_are_refused_at_delay_naming_the_field_briefly(
    check: dict[str, Any], field: str
) -> None:
    """A value nested thousands deep, megabytes of ``equals``, a 10 MB job reference, a
    row past the bigint range (the worker's OFFSET failed with the database's own
    ``bigint out of range``, its SQL quoted in the job's errors): a short InvalidPayload
    naming the field (not a RecursionError, not the value echoed back whole), nothing
    queued."""
    before = api.job_count()

    with pytest.raises(InvalidPayload) as refused:
        scenario.delay(scenario="fat-1", checks=[check])

    named = [name.replace("[", ".").replace("]", "") for name in refused.value.fields]
    assert any(name.startswith(field) for name in named), refused.value.fields
    assert len(str(refused.value)) < 2_000
    assert api.job_count() == before


def test_cancel_mid_run_stops_before_the_next_case(tags: tuple[str, str]) -> None:
    """Case 1 reads only the ledger; case 2 reads ``datasets``, which the test holds
    locked, so the job is mid-run, between its cases, when the cancel comes: case 2
    finishes, case 3 never starts."""
    dataset, import_id = tags
    checks = [
        {"check": "job_succeeded", "job": import_id},
        {"check": "row_count", "dataset": dataset, "equals": 3},
        {"check": "row_count", "dataset": dataset, "equals": 3},
    ]
    with domain.table_locked("datasets"):
        job_id = scenario.apply_async(
            kwargs={"scenario": "fat-2", "checks": checks}, tenant="acme"
        ).id
        domain.wait_until(
            lambda: any(line.startswith("case 1.") for line in domain.logs(job_id)),
            "case 1 run",
        )
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="test cancel") == "requested"

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "canceled"
    assert job["result"] is None
    cases = [line for line in domain.logs(job_id) if line.startswith("case ")]
    assert [line.split(":")[0] for line in cases] == ["case 1. job_succeeded", "case 2. row_count"]
    assert ledger.transitions(job_id)[-1] == ("running", "canceled")
