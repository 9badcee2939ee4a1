"""``validation`` end to end: rules over a dataset the ``import`` job wrote, through a real
worker; the ledger (item errors, result, history) checked with SQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.exceptions import InvalidPayload
from app.ledger.transitions import request_cancel
from tasks import import_data, validation
from tests.support import api, domain, ledger
from tests.support.api import ACME
from tests.support.ledger import wait_for_status

pytestmark = pytest.mark.usefixtures("worker")

DONE = ("succeeded", "partial", "failed", "canceled")

RULES: list[dict[str, Any]] = [
    {"rule": "required", "field": "tag"},
    {"rule": "pattern", "field": "tag", "pattern": r"^[A-Z]{2}-\d{3}$"},
    {"rule": "type", "field": "rated_kw", "type": "decimal"},
    {"rule": "range", "field": "rated_kw", "min": 0, "max": 500},
    {"rule": "unique", "field": "tag"},
    {"rule": "reference", "field": "area", "dataset": "AREAS", "column": "code"},
]


def imported(tmp_path: Path, name: str, header: list[str], rows: list[list[Any]], **kw: Any) -> str:
    """A dataset of tenant ``acme`` written by a real ``import`` job; its name."""
    dataset = domain.unique(name)
    source = domain.write_csv(tmp_path / f"{dataset}.csv", header, rows)
    job_id = import_data.apply_async(
        kwargs={"source": str(source), "dataset": dataset, **kw}, tenant="acme"
    ).id
    assert wait_for_status(job_id, *DONE)["status"] == "succeeded"
    return dataset


def rules_for(areas: str) -> list[dict[str, Any]]:
    return [dict(rule, dataset=areas) if rule["rule"] == "reference" else rule for rule in RULES]


def test_each_failing_row_and_rule_is_an_item_error_and_counted_per_rule(tmp_path: Path) -> None:
    areas = imported(tmp_path, "areas", ["code"], [["A1"], ["B2"]])
    tags = imported(
        tmp_path,
        "tags",
        ["tag", "rated_kw", "area"],
        [
            ["PT-101", "12.5", "A1"],  # row 1: fine
            ["", "3", "A1"],  # row 2: required
            ["pt-102", "600", "B2"],  # row 3: pattern, range
            ["PT-101", "many", "C3"],  # row 4: type, range (not a number), unique, reference
            ["PT-104", "0", ""],  # row 5: fine (an empty reference is required's business)
        ],
    )

    job_id = validation.apply_async(
        kwargs={"dataset": tags, "rules": rules_for(areas)}, tenant="acme"
    ).id

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "partial", job["failure_reason"]
    found = sorted((e["row"], e["rule_index"], e["rule"], e["field"]) for e in job["errors"])
    assert found == [
        (2, 0, "required", "tag"),
        (3, 1, "pattern", "tag"),
        (3, 3, "range", "rated_kw"),
        (4, 2, "type", "rated_kw"),
        (4, 3, "range", "rated_kw"),
        (4, 4, "unique", "tag"),
        (4, 5, "reference", "area"),
    ]
    messages = {(e["row"], e["rule"]): e["message"] for e in job["errors"]}
    assert "duplicate of row 1" in messages[(4, "unique")]
    assert "above the maximum 500" in messages[(3, "range")]
    assert "not a code of dataset" in messages[(4, "reference")]
    assert job["result"]["rows"] == 5
    assert job["result"]["rows_failed"] == 3
    assert [r["failed"] for r in job["result"]["rules"]] == [1, 1, 1, 2, 1, 1]
    assert job["result"]["failed_by_rule"] == {
        "required": 1,
        "pattern": 1,
        "type": 1,
        "range": 2,
        "unique": 1,
        "reference": 1,
    }
    assert job["subject"] == tags
    assert job["queue"] == "validation"
    assert job["progress"] == 100
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "partial"),
    ]


def test_a_dataset_that_passes_every_rule_succeeds(tmp_path: Path) -> None:
    areas = imported(tmp_path, "areas", ["code"], [["A1"]])
    tags = imported(
        tmp_path,
        "tags",
        ["tag", "rated_kw", "area"],
        [["PT-101", "1", "A1"], ["PT-102", "2", "A1"]],
    )

    job_id = validation.apply_async(
        kwargs={"dataset": tags, "rules": rules_for(areas)}, tenant="acme"
    ).id

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "succeeded"
    assert job["errors"] in (None, [])
    assert job["result"]["rows"] == 2
    assert job["result"]["rows_failed"] == 0


def test_a_bad_rule_is_refused_at_delay_and_writes_nothing() -> None:
    before = api.job_count()
    rules = [RULES[0], RULES[1], {"rule": "pattern", "field": "tag", "pattern": "(x)\\1"}]

    with pytest.raises(InvalidPayload) as refused:
        validation.delay(dataset="tags", rules=rules)

    assert "rules[2].pattern" in refused.value.fields
    assert "rules[2].pattern" in str(refused.value)
    assert api.job_count() == before


def test_through_the_api_a_bad_rule_is_422_and_a_good_one_runs_for_the_keys_tenant(
    tmp_path: Path,
) -> None:
    tags = imported(tmp_path, "tags", ["tag"], [["PT-101"], ["x"]])
    with TestClient(api.create_app(api.keyring())) as client:
        bad = client.post(
            "/jobs",
            json={
                "type": "validation",
                "payload": {"dataset": tags, "rules": [{"rule": "range", "field": "tag"}]},
            },
            headers=ACME,
        )
        good = client.post(
            "/jobs",
            json={"type": "validation", "payload": {"dataset": tags, "rules": [RULES[1]]}},
            headers=ACME,
        )

    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["detail"]] == ["payload.rules[0].max"]
    assert good.status_code == 202, good.text
    job = wait_for_status(good.json()["id"], *DONE)
    assert job["tenant"] == "acme"
    assert job["status"] == "partial"
    assert [(e["row"], e["rule"]) for e in job["errors"]] == [(2, "pattern")]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dataset": "nowhere"}, "dataset", "has no dataset 'nowhere'"),
        ({"rules": [{"rule": "required", "field": "tga"}]}, "rules[0].field", "no column 'tga'"),
        (
            {"rules": [RULES[0], {"rule": "reference", "field": "tag", "dataset": "nowhere"}]},
            "rules[1].dataset",
            "no dataset 'nowhere'",
        ),
        (
            {"rules": [{"rule": "reference", "field": "tag", "dataset": "$TAGS", "column": "x"}]},
            "rules[0].column",
            "no column 'x'",
        ),
    ],
)
def test_what_only_the_data_can_show_wrong_fails_naming_the_rule(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    tags = imported(tmp_path, "tags", ["tag"], [["PT-101"]])
    payload: dict[str, Any] = {"dataset": tags, "rules": [RULES[0]], **change}
    payload["rules"] = [
        dict(r, dataset=tags) if r.get("dataset") == "$TAGS" else r for r in payload["rules"]
    ]

    job = wait_for_status(validation.apply_async(kwargs=payload, tenant="acme").id, *DONE)

    assert job["status"] == "failed"
    assert f"field '{field}'" in job["failure_reason"]
    assert words in job["failure_reason"]
    assert job["result"] is None


def test_another_tenants_dataset_of_the_same_name_is_not_seen(tmp_path: Path) -> None:
    tags = imported(tmp_path, "tags", ["tag"], [["PT-101"]])

    job = wait_for_status(
        validation.apply_async(kwargs={"dataset": tags, "rules": [RULES[0]]}, tenant="globex").id,
        *DONE,
    )

    assert job["status"] == "failed"
    assert f"tenant 'globex' has no dataset '{tags}'" in job["failure_reason"]


def big_dataset(rows: int) -> str:
    """A dataset of ``rows`` rows of tenant acme, written with one statement (fixture data:
    the import job is not what this test is about)."""
    name = domain.unique("big")
    domain.execute(
        "INSERT INTO datasets (tenant, name, columns) VALUES ('acme', :name, '[\"tag\"]')",
        name=name,
    )
    domain.execute(
        "INSERT INTO dataset_rows (tenant, dataset_id, data) "
        "SELECT 'acme', d.id, jsonb_build_object('tag', 'T-' || n) "
        "FROM datasets d, generate_series(1, :rows) AS n "
        "WHERE d.tenant = 'acme' AND d.name = :name",
        name=name,
        rows=rows,
    )
    return name


def test_cancel_mid_run_stops_at_the_next_batch_and_leaves_no_result() -> None:
    dataset = big_dataset(200_000)
    job_id = validation.apply_async(
        kwargs={"dataset": dataset, "rules": [RULES[1], RULES[4]], "batch_size": 100},
        tenant="acme",
    ).id
    domain.wait_until(
        lambda: (ledger.job(job_id) or {}).get("progress", 0) > 0, "validation under way"
    )

    assert request_cancel(uuid.UUID(job_id), actor="api", reason="test cancel") == "requested"

    job = wait_for_status(job_id, *DONE)
    assert job["status"] == "canceled"
    assert 0 < job["progress"] < 100
    assert job["result"] is None
    assert ledger.transitions(job_id)[-1] == ("running", "canceled")
