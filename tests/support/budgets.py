"""Test support for the budget job types: a budget's transactions and suggestions
written with plain SQL (so a test states exactly the rows it starts from), read back the
same way, and a second connection that holds a lock (a gate a job waits at, released by
the test: a mid-run point without sleeps)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text

from app import db
from tests.support import domain
from tests.support.ledger import wait_for_status

#: A transaction to seed: ``(external_id, payee, category or None)``.
Row = tuple[str, str, str | None]
#: The tenant the budget tests act for, and the one whose same-named budget must stay.
TENANT, OTHER = "acme", "other"
#: Categorized history (two coffees, one grocer) and uncategorized transactions.
ROWS: list[Row] = [
    ("h1", "Coffee Shop 1", "Coffee"),
    ("h2", "COFFEE SHOP #2", "Coffee"),
    ("h3", "Grocer 9", "Groceries"),
    ("u1", "Coffee Shop 7", None),
    ("u2", "coffee shop", None),
    ("u3", "Grocer", None),
    ("u4", "Grocer 1", None),
    ("u5", "Coffee Shop 5", None),
    ("u6", "Coffee Shop 6", None),
]
#: The columns of a bank file (a sync source).
BANK_HEADER = ["id", "date", "payee", "amount", "category", "updated_at"]


def finished(job_id: str) -> dict[str, Any]:
    """The job's ledger row once it ended."""
    return wait_for_status(job_id, "succeeded", "partial", "failed", "canceled", timeout=60)


def slow_bank() -> domain.Release:
    """A bank file of 800 uncategorized transactions served in two parts: the first 500
    (one sync batch) at once, the rest when the test calls ``next_part()``."""
    rows = [
        f"c{i},2024-01-01,Payee {chr(65 + i % 26)},-1.00,,2024-01-01T00:00:{i % 60:02d}\n".encode()
        for i in range(800)
    ]
    head = (",".join(BANK_HEADER) + "\n").encode()
    return domain.Release([head + b"".join(rows[:500]), b"".join(rows[500:])])


def seed(tenant: str, budget: str, rows: list[Row]) -> dict[str, int]:
    """Insert the budget's transactions; returns ``external_id -> row id``."""
    with db.engine().begin() as connection:
        for number, (external_id, payee, category) in enumerate(rows, start=1):
            connection.execute(
                text(
                    "INSERT INTO transactions (tenant, budget_id, external_id, booked_on, payee, "
                    "payee_normalized, amount, category, memo) VALUES (:tenant, :budget, :id, "
                    "'2024-01-01'::date + :day, :payee, :normalized, :amount, :category, :memo)"
                ),
                {
                    "tenant": tenant,
                    "budget": budget,
                    "id": external_id,
                    "day": number,
                    "payee": payee,
                    "normalized": " ".join(
                        "".join(c if c.isalpha() else " " for c in payee.casefold()).split()
                    ),
                    "amount": f"-{number}.25",
                    "category": category,
                    "memo": f"memo é {number}",
                },
            )
    return ids(tenant, budget)


def ids(tenant: str, budget: str) -> dict[str, int]:
    rows = domain.query(
        "SELECT external_id, id FROM transactions WHERE tenant = :t AND budget_id = :b",
        t=tenant,
        b=budget,
    )
    return {row["external_id"]: row["id"] for row in rows}


def suggest(
    tenant: str,
    budget: str,
    transaction_id: int,
    category: str,
    status: str = "pending",
    confidence: float = 0.5,
) -> int:
    """Insert a suggestion; returns its id."""
    with db.engine().begin() as connection:
        return int(
            connection.execute(
                text(
                    "INSERT INTO suggestions (tenant, budget_id, transaction_id, category, "
                    "confidence, evidence, status) VALUES (:tenant, :budget, :tx, :category, "
                    ":confidence, 2, :status) RETURNING id"
                ),
                {
                    "tenant": tenant,
                    "budget": budget,
                    "tx": transaction_id,
                    "category": category,
                    "confidence": confidence,
                    "status": status,
                },
            ).scalar_one()
        )


def state(tenant: str, budget: str) -> dict[str, Any]:
    """The budget as a restore must give it back: its transactions by external id (every
    stored column but row ids and bookkeeping) and its suggestions by transaction."""
    transactions = {
        row["external_id"]: row
        for row in domain.query(
            "SELECT external_id, booked_on, payee, payee_normalized, amount, category, memo, "
            "source_cursor FROM transactions WHERE tenant = :t AND budget_id = :b",
            t=tenant,
            b=budget,
        )
    }
    suggestions = {
        row["external_id"]: row
        for row in domain.query(
            "SELECT t.external_id, s.category, s.confidence, s.evidence, s.status "
            "FROM suggestions s JOIN transactions t ON t.id = s.transaction_id "
            "WHERE s.tenant = :t AND s.budget_id = :b",
            t=tenant,
            b=budget,
        )
    }
    return {"transactions": transactions, "suggestions": suggestions}


def rows_of(tenant: str, budget: str) -> list[dict[str, Any]]:
    """Every column of the budget's transactions and suggestions, row ids included (for
    "not touched at all")."""
    return domain.query(
        "SELECT 't' AS kind, id, category, job_id::text AS job, updated_at, NULL AS status "
        "FROM transactions WHERE tenant = :t AND budget_id = :b UNION ALL "
        "SELECT 's', id, category, job_id::text, updated_at, status FROM suggestions "
        "WHERE tenant = :t AND budget_id = :b ORDER BY 1, 2",
        t=tenant,
        b=budget,
    )


@contextmanager
def holding(sql: str, **params: Any) -> Iterator[Connection]:
    """Run ``sql`` (a ``LOCK TABLE`` or ``SELECT … FOR UPDATE``) in a transaction kept open
    until the block ends: a job reaching those rows waits there."""
    with db.engine().connect() as connection:
        transaction = connection.begin()
        try:
            connection.execute(text(sql), params)
            yield connection
        finally:
            transaction.rollback()


def job_uuid(job_id: str) -> uuid.UUID:
    return uuid.UUID(str(job_id))


def lock_waiters() -> int:
    """Backends of this database waiting for a lock (a job stopped at a :func:`holding`)."""
    rows = domain.query(
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(rows[0]["n"])


def wait_for_lock_waiter(what: str) -> None:
    domain.wait_until(lambda: lock_waiters() > 0, what)
