"""``suggestions_apply`` and ``suggestions_retry_payee`` end to end: a real worker,
Redis and PostgreSQL; the budget's rows written and read with SQL
(tests/support/budgets.py), mid-run points held by a lock the test releases."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.exceptions import InvalidPayload
from app.ledger.transitions import request_cancel
from tasks.suggestions_apply import suggestions_apply
from tasks.suggestions_retry_payee import suggestions_retry_payee
from tests.support import budgets, domain
from tests.support.ledger import job, transitions

pytestmark = pytest.mark.usefixtures("worker")

TENANT, OTHER, finished = budgets.TENANT, budgets.OTHER, budgets.finished
ROWS = budgets.ROWS


def suggestion(suggestion_id: int) -> dict[str, Any] | None:
    rows = domain.query("SELECT * FROM suggestions WHERE id = :id", id=suggestion_id)
    return rows[0] if rows else None


def category(transaction_id: int) -> str | None:
    rows = domain.query("SELECT category FROM transactions WHERE id = :id", id=transaction_id)
    return rows[0]["category"]


def test_apply_applies_the_accepted_and_makes_an_item_error_of_each_that_no_longer_fits() -> None:
    budget = domain.unique("household")
    tx = budgets.seed(TENANT, budget, ROWS)
    other_tx = budgets.seed(OTHER, budget, ROWS)  # another tenant's budget of the same name
    good = budgets.suggest(TENANT, budget, tx["u1"], "Coffee")
    same = budgets.suggest(TENANT, budget, tx["u5"], "Coffee")
    recategorised = budgets.suggest(TENANT, budget, tx["u2"], "Coffee")
    rejected = budgets.suggest(TENANT, budget, tx["u3"], "Groceries", status="rejected")
    unknown = budgets.suggest(TENANT, budget, tx["u4"], "Vanished")
    gone = budgets.suggest(TENANT, budget, tx["u6"], "Coffee")
    others = budgets.suggest(OTHER, budget, other_tx["u1"], "Coffee")
    domain.execute("UPDATE transactions SET category = 'Food' WHERE id = :id", id=tx["u2"])
    domain.execute("UPDATE transactions SET category = 'Coffee' WHERE id = :id", id=tx["u5"])
    domain.execute("DELETE FROM transactions WHERE id = :id", id=tx["u6"])
    other_before = budgets.rows_of(OTHER, budget)
    ids = [good, same, recategorised, rejected, unknown, gone, others, 987654321]

    job_id = suggestions_apply.apply_async(args=(budget, ids), tenant=TENANT).id

    done = finished(job_id)
    assert done["status"] == "partial", done["failure_reason"]
    assert done["result"] == {"requested": 8, "applied": 2, "already_applied": 0, "failed": 6}
    problems = {error["suggestion_id"]: error["message"] for error in done["errors"]}
    assert set(problems) == {recategorised, rejected, unknown, gone, others, 987654321}
    assert "categorised as 'Food' already" in problems[recategorised]
    assert "is rejected: only pending suggestions are applied" in problems[rejected]
    assert "category 'Vanished' is unknown to the budget" in problems[unknown]
    for missing in (gone, others, 987654321):
        assert "no such suggestion in this budget" in problems[missing]
    # applied: both rows, by this job
    assert category(tx["u1"]) == "Coffee"
    for applied in (good, same):
        row = suggestion(applied)
        assert row is not None
        assert (row["status"], str(row["job_id"])) == ("applied", job_id)
    # the ones that no longer fit are as they were
    assert category(tx["u2"]) == "Food"
    assert suggestion(recategorised)["status"] == "pending"  # type: ignore[index]
    assert (category(tx["u3"]), category(tx["u4"])) == (None, None)
    assert suggestion(unknown)["status"] == "pending"  # type: ignore[index]
    assert budgets.rows_of(OTHER, budget) == other_before
    assert transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "partial"),
    ]


def test_apply_refuses_bad_payloads_naming_the_field_and_records_nothing() -> None:
    budget = domain.unique("bad")
    cases = [
        ((budget, []), {}, "suggestion_ids"),
        ((budget, [1, 2, 1]), {}, "suggestion_ids"),
        ((budget, [0]), {}, "suggestion_ids[0]"),
        ((budget, [2**63]), {}, "suggestion_ids[0]"),  # past bigint: no row has it
        ((budget, [1]), {"batch_size": 0}, "batch_size"),
        (("../x", [1]), {}, "budget_id"),
        ((budget, [1]), {"accept_all": True}, "accept_all"),
    ]
    for args, kwargs, field in cases:
        with pytest.raises(InvalidPayload) as refused:
            suggestions_apply.delay(*args, **kwargs)
        assert field in refused.value.fields, (args, kwargs, refused.value.fields)
    assert domain.query("SELECT id FROM jobs") == []


def test_a_cancel_between_batches_leaves_each_suggestion_whole() -> None:
    budget = domain.unique("cancel")
    tx = budgets.seed(TENANT, budget, ROWS)
    ids = [budgets.suggest(TENANT, budget, tx[name], "Coffee") for name in ("u1", "u2", "u5", "u6")]
    # The second batch waits for the transaction row the test holds.
    with budgets.holding("SELECT id FROM transactions WHERE id = :id FOR UPDATE", id=tx["u2"]):
        job_id = suggestions_apply.apply_async(
            args=(budget, ids), kwargs={"batch_size": 1}, tenant=TENANT
        ).id
        budgets.wait_for_lock_waiter("batch 2 waiting for the held row")
        assert suggestion(ids[0])["status"] == "applied"  # type: ignore[index]
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="stop") == "requested"

    done = finished(job_id)
    assert done["status"] == "canceled"
    statuses = [suggestion(i)["status"] for i in ids]  # type: ignore[index]
    categories = [category(tx[name]) for name in ("u1", "u2", "u5", "u6")]
    # batch 2 was in flight when the cancel came; it completes, batch 3 never starts
    assert statuses == ["applied", "applied", "pending", "pending"]
    assert categories == ["Coffee", "Coffee", None, None]
    assert transitions(job_id)[-1] == ("running", "canceled")

    again = finished(suggestions_apply.apply_async(args=(budget, ids), tenant=TENANT).id)
    assert again["status"] == "partial"  # the two applied by the canceled job
    assert again["result"]["applied"] == 2
    assert [category(tx[name]) for name in ("u5", "u6")] == ["Coffee", "Coffee"]


def test_retry_payee_regenerates_that_payees_pending_suggestions_only() -> None:
    budget = domain.unique("retry")
    tx = budgets.seed(TENANT, budget, ROWS)
    other_tx = budgets.seed(OTHER, budget, ROWS)
    stale = budgets.suggest(TENANT, budget, tx["u1"], "Old coffee")
    decided = budgets.suggest(TENANT, budget, tx["u2"], "Tea", status="rejected")
    grocer = budgets.suggest(TENANT, budget, tx["u3"], "Old groceries")
    budgets.suggest(OTHER, budget, other_tx["u1"], "Old coffee")
    other_before = budgets.rows_of(OTHER, budget)
    grocer_before = suggestion(grocer)

    job_id = suggestions_retry_payee.apply_async(args=(budget, "COFFEE SHOP #42"), tenant=TENANT).id

    done = finished(job_id)
    assert done["status"] == "succeeded", done["failure_reason"]
    assert done["result"] == {
        "payee": "coffee shop",
        "category": "Coffee",
        "transactions_considered": 3,  # u1, u5, u6 (u2 has a rejected suggestion)
        "suggestions": 3,
        "replaced_pending": 1,
    }
    assert suggestion(stale) is None
    coffee = domain.query(
        "SELECT t.external_id, s.category, s.confidence, s.evidence, s.job_id::text AS job "
        "FROM suggestions s JOIN transactions t ON t.id = s.transaction_id "
        "WHERE s.tenant = :t AND s.budget_id = :b AND s.status = 'pending' "
        "AND t.payee_normalized = 'coffee shop' ORDER BY 1",
        t=TENANT,
        b=budget,
    )
    assert [(r["external_id"], r["category"], r["confidence"], r["evidence"]) for r in coffee] == [
        ("u1", "Coffee", 1.0, 2),
        ("u5", "Coffee", 1.0, 2),
        ("u6", "Coffee", 1.0, 2),
    ]
    assert {r["job"] for r in coffee} == {job_id}
    assert suggestion(decided)["status"] == "rejected"  # type: ignore[index]
    assert suggestion(grocer) == grocer_before
    assert budgets.rows_of(OTHER, budget) == other_before


def test_retry_payee_fails_naming_payee_for_one_the_budget_does_not_have() -> None:
    budget = domain.unique("nopayee")
    tx = budgets.seed(TENANT, budget, ROWS)
    kept = budgets.suggest(TENANT, budget, tx["u1"], "Coffee")

    done = finished(
        suggestions_retry_payee.apply_async(args=(budget, "Nobody Ltd"), tenant=TENANT).id
    )

    assert done["status"] == "failed"
    assert done["failure_reason"].startswith("field 'payee': ")
    assert "no transaction of payee 'nobody ltd'" in done["failure_reason"]
    assert suggestion(kept)["status"] == "pending"  # type: ignore[index]
    with pytest.raises(InvalidPayload) as refused:
        suggestions_retry_payee.delay(budget, "#1234")
    assert "has no letters" in refused.value.fields["payee"]


def test_retry_payee_canceled_mid_run_leaves_the_previous_suggestions() -> None:
    budget = domain.unique("retrycancel")
    tx = budgets.seed(TENANT, budget, ROWS)
    stale = budgets.suggest(TENANT, budget, tx["u1"], "Old coffee")
    before = budgets.rows_of(TENANT, budget)
    # The candidates' read looks at suggestions: it waits for the table the test holds.
    with budgets.holding("LOCK TABLE suggestions IN ACCESS EXCLUSIVE MODE"):
        job_id = suggestions_retry_payee.apply_async(
            args=(budget, "coffee shop"), kwargs={"batch_size": 1}, tenant=TENANT
        ).id
        domain.wait_until(
            lambda: any("uncategorized" in line for line in domain.logs(job_id)),
            "history read",
        )
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="stop") == "requested"

    done = finished(job_id)
    assert done["status"] == "canceled"
    assert budgets.rows_of(TENANT, budget) == before
    assert suggestion(stale)["category"] == "Old coffee"  # type: ignore[index]
    assert job(job_id)["result"] is None  # type: ignore[index]
