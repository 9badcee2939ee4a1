"""The budget statements of tasks/_store.py and tasks/_snapshot_store.py on the real
ledger database: an apply delivered twice counts its own work once, a payee-scoped
replace touches that payee only, a restore replaces one tenant's budget only."""

from __future__ import annotations

import io
import uuid
from datetime import date
from decimal import Decimal

from tasks import _snapshot_store, _store
from tasks._snapshots import (
    CategoryRecord,
    Header,
    SnapshotWriter,
    SuggestionRecord,
    TransactionRecord,
    snapshot_records,
)
from tests.support import budgets, domain

ROWS: list[budgets.Row] = [
    ("h1", "Coffee Shop", "Coffee"),
    ("u1", "Coffee Shop 2", None),
    ("u2", "Grocer", None),
]


def test_an_apply_run_twice_by_one_job_counts_its_own_work_as_again() -> None:
    budget = domain.unique("twice")
    tx = budgets.seed("acme", budget, ROWS)
    suggestion = budgets.suggest("acme", budget, tx["u1"], "Coffee")
    job_id = uuid.uuid4()

    first = _store.apply_suggestions("acme", budget, job_id, [suggestion])
    second = _store.apply_suggestions("acme", budget, job_id, [suggestion])
    by_another = _store.apply_suggestions("acme", budget, uuid.uuid4(), [suggestion])

    assert [o.outcome for o in (*first, *second, *by_another)] == ["applied", "again", "refused"]
    assert "applied already" in str(by_another[0].problem)


def test_a_payee_scoped_replace_leaves_the_other_payees_pending_suggestions() -> None:
    budget = domain.unique("payee")
    tx = budgets.seed("acme", budget, ROWS)
    coffee = budgets.suggest("acme", budget, tx["u1"], "Old")
    grocer = budgets.suggest("acme", budget, tx["u2"], "Old")

    replaced = _store.replace_pending_suggestions(
        "acme", budget, uuid.uuid4(), [_store.Proposal(tx["u1"], "Coffee", 1.0, 1)], "coffee shop"
    )

    assert replaced == 1
    left = domain.query("SELECT id, category FROM suggestions WHERE budget_id = :b", b=budget)
    assert {(r["id"] == coffee, r["id"] == grocer, r["category"]) for r in left} == {
        (False, False, "Coffee"),
        (False, True, "Old"),
    }


def test_count_transactions_is_per_tenant_and_payee() -> None:
    budget = domain.unique("count")
    budgets.seed("acme", budget, ROWS)
    budgets.seed("other", budget, [*ROWS, ("x", "Coffee Shop 9", None)])

    assert _store.count_transactions("acme", budget) == 3
    assert _store.count_transactions("acme", budget, "coffee shop") == 2
    assert _store.count_transactions("acme", budget, "coffee shop", uncategorized=True) == 1
    assert _store.count_transactions("other", budget, "coffee shop") == 3
    with _snapshot_store.consistent_read() as connection:
        assert _snapshot_store.count_budget(connection, "acme", budget) == {
            "transactions": 3,
            "suggestions": 0,
        }


def test_a_restore_streams_records_across_batches_into_one_tenants_budget() -> None:
    """2,500 transactions and as many suggestions (past two of the restore's 1,000-row
    inserts each, the transactions' last insert flushed when the first suggestion
    comes), read from a snapshot file as the job reads it; the other tenant's budget of
    the same name is not touched."""
    budget = domain.unique("restore")
    budgets.seed("other", budget, ROWS)
    budgets.seed("acme", budget, ROWS)
    count = 2500
    header = Header(
        snapshot="jobledger.budget",
        version=1,
        tenant="acme",
        budget_id=budget,
        job_id="j",
        created_at="2024-01-01T00:00:00+00:00",
    )
    copy = io.BytesIO()
    writer = SnapshotWriter(copy, header)
    writer.write(CategoryRecord(name="Coffee", transactions=count))
    for i in range(count):
        writer.write(
            TransactionRecord(
                external_id=f"r{i}",
                booked_on=date(2024, 1, 2),
                payee="Café",
                payee_normalized="café",
                amount=Decimal("-1.00"),
                category="Coffee",
            )
        )
    for i in range(count):
        writer.write(
            SuggestionRecord(
                transaction=f"r{i}", category="Coffee", confidence=0.5, evidence=i, status="pending"
            )
        )
    writer.finish()

    counts = _snapshot_store.restore_budget("acme", budget, uuid.uuid4(), snapshot_records(copy))

    assert counts == {
        "transactions_removed": 3,
        "suggestions_removed": 0,
        "transactions_restored": count,
        "suggestions_restored": count,
    }
    [linked] = domain.query(
        "SELECT count(*) AS n FROM suggestions s JOIN transactions t ON t.id = s.transaction_id "
        "WHERE s.tenant = 'acme' AND s.budget_id = :b AND t.external_id = 'r' || s.evidence",
        b=budget,
    )
    assert linked["n"] == count
    assert sorted(budgets.ids("other", budget)) == ["h1", "u1", "u2"]
