"""``sync``, ``suggest`` and the ``sync_and_suggest`` chain end to end: real worker, Redis
and PostgreSQL; the ledger's steps and the domain tables checked with SQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from app.ledger.transitions import request_cancel
from tasks import suggest, sync, sync_and_suggest
from tests.support import budgets, domain, sources
from tests.support.ledger import events, wait_for_status
from tests.support.ledger import transitions as parent_transitions

pytestmark = pytest.mark.usefixtures("worker")

HEADER = ["id", "date", "payee", "amount", "category", "updated_at"]
HISTORY = [
    ["t1", "2024-01-02", "COFFEE SHOP #12", "-3.50", "Coffee", "2024-01-02T10:00:00"],
    ["t2", "2024-01-05", "Coffee Shop #31", "-4.10", "Coffee", "2024-01-05T10:00:00"],
    ["t3", "2024-01-09", "coffee shop", "-2.90", "Coffee", "2024-01-09T10:00:00"],
    ["t4", "2024-01-12", "Coffee Shop 12", "-15.00", "Food", "2024-01-12T10:00:00"],
    ["t5", "2024-01-03", "Grocer 55", "-40.00", "Groceries", "2024-01-03T10:00:00"],
    ["t6", "2024-01-10", "GROCER 99", "-62.10", "Groceries", "2024-01-10T10:00:00"],
    ["t7", "2024-01-01", "Rent Co", "-900", "Housing", "2024-01-01T10:00:00"],
    ["t8", "2024-02-01", "Rent Co.", "-900", "Bills", "2024-02-01T10:00:00"],
]
UNCATEGORIZED = [
    ["u1", "2024-02-03", "Coffee Shop #7", "-3.20", "", "2024-02-03T10:00:00"],
    ["u2", "2024-02-04", "grocer", "-12.00", "", "2024-02-04T10:00:00"],
    ["u3", "2024-03-01", "RENT CO", "-900", "", "2024-03-01T10:00:00"],
    ["u4", "2024-02-05", "Unknown Payee", "-1.00", "", "2024-02-05T10:00:00"],
]
#: What the history says, worked out by hand: transaction -> (category, confidence, evidence).
EXPECTED = {
    "u1": ("Coffee", 0.75, 4),  # coffee shop: Coffee 3 of 4
    "u2": ("Groceries", 1.0, 2),  # grocer: Groceries 2 of 2
    "u3": ("Bills", 0.5, 2),  # rent co: a tie, the alphabetically first wins
}


def suggestions(budget_id: str, status: str = "pending") -> dict[str, tuple[str, float, int]]:
    rows = domain.query(
        "SELECT t.external_id, s.category, s.confidence, s.evidence FROM suggestions s "
        "JOIN transactions t ON t.id = s.transaction_id "
        "WHERE s.budget_id = :budget AND s.status = :status",
        budget=budget_id,
        status=status,
    )
    return {r["external_id"]: (r["category"], r["confidence"], r["evidence"]) for r in rows}


def transactions(budget_id: str) -> dict[str, dict[str, Any]]:
    rows = domain.query("SELECT * FROM transactions WHERE budget_id = :b", b=budget_id)
    return {row["external_id"]: row for row in rows}


def step_transitions(job_id: str, step_id: Any) -> list[tuple[str | None, str]]:
    return [(e["from_status"], e["to_status"]) for e in events(job_id) if e["step_id"] == step_id]


def finished(job_id: str) -> dict[str, Any]:
    return wait_for_status(job_id, "succeeded", "partial", "failed", "canceled", timeout=60)


def test_chain_ends_succeeded_with_two_steps_and_suggestions_from_history(
    tmp_path: Path,
) -> None:
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, HISTORY + UNCATEGORIZED)
    budget = domain.unique("household")

    parent_id = sync_and_suggest.delay(budget, str(source)).id

    parent = finished(parent_id)
    assert parent["status"] == "succeeded", parent["failure_reason"]
    assert parent["type"] == "sync_and_suggest"
    assert parent["subject"] == budget
    steps = domain.steps(parent_id)
    assert [(s["position"], s["step_type"], s["status"]) for s in steps] == [
        (1, "sync", "succeeded"),
        (2, "suggest", "succeeded"),
    ]
    assert steps[0]["completed_at"] <= steps[1]["started_at"]
    for step in steps:
        assert step_transitions(parent_id, step["id"]) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "succeeded"),
        ]
    assert parent_transitions(parent_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert len(transactions(budget)) == 12
    assert suggestions(budget) == EXPECTED
    assert parent["result"]["sync"]["records_written"] == 12
    assert parent["result"]["suggest"]["suggestions"] == 3


def test_failing_source_fails_step_one_cancels_step_two_and_fails_the_parent(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-export.csv"
    budget = domain.unique("broken")

    parent_id = sync_and_suggest.delay(budget, str(missing)).id

    parent = finished(parent_id)
    assert parent["status"] == "failed"
    assert "not found" in parent["failure_reason"]
    first, second = domain.steps(parent_id)
    assert (first["position"], first["status"]) == (1, "failed")
    assert "not found" in first["failure_reason"]
    assert (second["position"], second["status"]) == (2, "canceled")
    assert second["started_at"] is None
    assert "step 1 failed" in second["failure_reason"]
    assert suggestions(budget) == {}


def test_canceling_the_parent_stops_the_sync_at_its_next_batch() -> None:
    slow = budgets.slow_bank()
    budget = domain.unique("slow")
    with domain.http_server({"/bank.csv": slow}) as base:
        parent_id = sync_and_suggest.delay(budget, f"{base}/bank.csv").id
        domain.wait_until(lambda: len(transactions(budget)) == 500, "first batch synced")

        assert request_cancel(uuid.UUID(parent_id), actor="api", reason="stop") == "requested"
        slow.next_part()
        parent = finished(parent_id)

    assert parent["status"] == "canceled"
    assert [s["status"] for s in domain.steps(parent_id)] == ["canceled", "canceled"]
    assert len(transactions(budget)) == 500  # the committed batch is kept
    assert suggestions(budget) == {}


def test_database_sync_is_incremental_and_idempotent() -> None:
    bank = sources.sqlite_bank(
        [
            ("a", "2024-01-01", "Shop A", -1.5, "Food", "2024-01-01T00:00:00"),
            ("b", "2024-01-02", "Shop B", -2.5, None, "2024-01-02T00:00:00"),
            ("c", "2024-01-03", "Shop C", 10, None, "2024-01-03T00:00:00"),
        ],
    )
    source = {"connection": "bank", "table": "bank_tx"}  # configured in tests/conftest.py
    budget = domain.unique("db")

    first = finished(sync.delay(budget, source).id)
    assert first["status"] == "succeeded", first["failure_reason"]
    assert first["result"]["records_written"] == 3
    assert first["result"]["cursor"] == "2024-01-03T00:00:00"

    again = finished(sync.delay(budget, source).id)
    assert again["result"]["records_read"] == 1  # only the boundary record
    assert again["result"]["records_written"] == 0

    bank.execute(
        "UPDATE bank_tx SET category = 'Fun', updated_at = '2024-01-04T00:00:00' WHERE id = 'b'"
    )
    bank.execute(
        "INSERT INTO bank_tx VALUES ('d', '2024-01-05', 'Shop D', -4, NULL, '2024-01-05T00:00:00')"
    )
    bank.close()
    third = finished(sync.delay(budget, source).id)
    assert third["result"]["records_read"] == 3  # boundary c, changed b, new d
    assert third["result"]["records_written"] == 2

    full = finished(sync.delay(budget, source, full_resync=True).id)
    assert full["result"]["records_read"] == 4
    assert full["result"]["records_written"] == 0

    stored = transactions(budget)
    assert sorted(stored) == ["a", "b", "c", "d"]
    assert stored["b"]["category"] == "Fun"
    assert str(stored["a"]["amount"]) == "-1.50"
    assert stored["a"]["payee_normalized"] == "shop a"


def test_bad_records_make_the_sync_partial(tmp_path: Path) -> None:
    rows = [
        *HISTORY[:2],
        ["x1", "not a date", "Shop", "-1", "", "2024-01-02T00:00:00"],
        ["x2", "2024-01-02", "Shop", "lots", "", "2024-01-02T00:00:00"],
    ]
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, rows)
    budget = domain.unique("partial")

    job = finished(sync.delay(budget, str(source)).id)

    assert job["status"] == "partial"
    assert sorted((e["row"], e["field"]) for e in job["errors"]) == [(4, "date"), (5, "amount")]
    assert sorted(transactions(budget)) == ["t1", "t2"]


def test_a_record_with_text_postgresql_refuses_is_an_item_error(tmp_path: Path) -> None:
    """A NUL in a text field fails PostgreSQL's insert of the whole batch: it is the
    record's item error instead, and the other records are written."""
    rows = [*HISTORY[:2], ["x1", "2024-01-02", "Shop", "-1", "", "2024-01-02T00:00:00"]]
    rows[2][4] = "nul \x00 here"  # category
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, rows)
    budget = domain.unique("nul")

    job = finished(sync.delay(budget, str(source)).id)

    assert job["status"] == "partial", job["failure_reason"]
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(4, "category")]
    assert sorted(transactions(budget)) == ["t1", "t2"]


def test_suggest_replaces_pending_suggestions_and_never_applied_ones(tmp_path: Path) -> None:
    budget = domain.unique("rerun")
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, HISTORY + UNCATEGORIZED)
    assert finished(sync.delay(budget, str(source)).id)["status"] == "succeeded"
    assert finished(suggest.delay(budget).id)["status"] == "succeeded"
    assert suggestions(budget) == EXPECTED
    # The user accepts the suggestion for u2 (the application's part, done here by SQL).
    domain.execute(
        "UPDATE suggestions SET status = 'applied' WHERE budget_id = :b AND transaction_id ="
        " (SELECT id FROM transactions WHERE budget_id = :b AND external_id = 'u2')",
        b=budget,
    )
    # More history: the coffee shop is now mostly Food (4 of 7).
    more = [
        [f"f{i}", f"2024-03-0{i}", "Coffee Shop", "-9", "Food", f"2024-03-0{i}T00:00:00"]
        for i in range(1, 4)
    ]
    domain.write_csv(tmp_path / "more.csv", HEADER, more)
    assert finished(sync.delay(budget, str(tmp_path / "more.csv")).id)["status"] == "succeeded"

    rerun = finished(suggest.delay(budget).id)

    assert rerun["status"] == "succeeded"
    assert rerun["result"]["replaced_pending"] == 2
    assert suggestions(budget) == {"u1": ("Food", 0.5714, 7), "u3": ("Bills", 0.5, 2)}
    assert suggestions(budget, "applied") == {"u2": ("Groceries", 1.0, 2)}


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        (3, "1e999999", "out of range"),
        (3, "100000000000000000", "out of range"),
        (5, "a\x00b", "NUL"),
    ],
)
def test_a_value_out_of_range_or_unstorable_is_an_item_error(
    tmp_path: Path, column: int, value: str, words: str
) -> None:
    """An amount too large to round or to store, a cursor PostgreSQL cannot store: the
    record's item error naming the field, the other records written."""
    rows = [*HISTORY[:2], ["x1", "2024-01-02", "Shop", "-1", "", "2024-01-02T00:00:00"]]
    rows[2][column] = value
    source = domain.write_csv(tmp_path / "bank.csv", HEADER, rows)
    budget = domain.unique("range")

    job = finished(sync.delay(budget, str(source)).id)

    assert job["status"] == "partial", job["failure_reason"]
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(4, HEADER[column])]
    assert words in job["errors"][0]["message"]
    assert sorted(transactions(budget)) == ["t1", "t2"]


def test_a_json_line_with_a_nan_cursor_is_an_item_error(tmp_path: Path) -> None:
    source = tmp_path / "bank.jsonl"
    line = '{{"id": "{0}", "date": "2024-01-02", "payee": "Shop", "amount": -1, '
    source.write_text(
        (line + '"updated_at": "2024-01-02T00:00:00"}}\n').format("t1")
        + (line + '"updated_at": NaN}}\n').format("t2")
        + (line + '"updated_at": "2024-01-03T00:00:00"}}\n').format("t3")
    )
    budget = domain.unique("nan")

    job = finished(sync.delay(budget, str(source)).id)

    assert job["status"] == "partial", job["failure_reason"]
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(2, "updated_at")]
    assert "NaN" in job["errors"][0]["message"] or "nan" in job["errors"][0]["message"]
    assert sorted(transactions(budget)) == ["t1", "t3"]
    assert job["result"]["cursor"] == "2024-01-03T00:00:00"
