"""The statements of the snapshot job types: a budget read as one consistent whole, a
budget replaced by a snapshot in one transaction, and the ledger's record of a snapshot
file.

Kept apart from :mod:`tasks._store` (the other domain statements) because these read and
write a whole budget at once; the same rules hold: every statement filters on the
``tenant`` the caller passes (:attr:`JobContext.tenant`), never another.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, func

from app.db import engine
from app.ledger import engines
from models.tables import files, jobs
from tasks._snapshots import (
    CategoryRecord,
    Record,
    SuggestionRecord,
    TransactionRecord,
)
from tasks._store import FETCH, cursors, suggestions, transactions

#: The job type whose out file ``snapshot_redownload`` fetches again.
SNAPSHOT_TYPE = "snapshot_create"


def consistent_read() -> contextlib.AbstractContextManager[Connection]:
    """A connection whose statements all see one state of the database (a ``REPEATABLE
    READ`` transaction on PostgreSQL, one WAL snapshot on SQLite: the ledger engine's):
    a sync committing meanwhile is not half in a snapshot."""
    return engines.current().consistent_read()


def _budget(table: sa.Table, tenant: str, budget_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.tenant == tenant, table.c.budget_id == budget_id)


def count_budget(connection: Connection, tenant: str, budget_id: str) -> dict[str, int]:
    """How many transactions and suggestions the budget has."""
    counted = {}
    for name, table in (("transactions", transactions), ("suggestions", suggestions)):
        counted[name] = int(
            connection.execute(
                sa.select(func.count()).select_from(table).where(_budget(table, tenant, budget_id))
            ).scalar_one()
        )
    return counted


def budget_categories(connection: Connection, tenant: str, budget_id: str) -> list[CategoryRecord]:
    """Every category the budget's transactions carry, with how many do, by name."""
    query = (
        sa.select(transactions.c.category, func.count())
        .where(_budget(transactions, tenant, budget_id), transactions.c.category.is_not(None))
        .group_by(transactions.c.category)
        .order_by(transactions.c.category)
    )
    return [
        CategoryRecord(name=row[0], transactions=int(row[1])) for row in connection.execute(query)
    ]


def budget_transactions(
    connection: Connection, tenant: str, budget_id: str
) -> Iterator[TransactionRecord]:
    """The budget's transactions in id order, streamed."""
    query = (
        sa.select(
            transactions.c.external_id,
            transactions.c.booked_on,
            transactions.c.payee,
            transactions.c.payee_normalized,
            transactions.c.amount,
            transactions.c.category,
            transactions.c.memo,
            transactions.c.source_cursor,
        )
        .where(_budget(transactions, tenant, budget_id))
        .order_by(transactions.c.id)
    )
    for row in _streamed(connection, query):
        yield TransactionRecord(**row)


def budget_suggestions(
    connection: Connection, tenant: str, budget_id: str
) -> Iterator[SuggestionRecord]:
    """The budget's suggestions (every status) in id order, each naming its transaction
    by ``external_id``, streamed."""
    query = (
        sa.select(
            transactions.c.external_id.label("transaction"),
            suggestions.c.category,
            suggestions.c.confidence,
            suggestions.c.evidence,
            suggestions.c.status,
        )
        .select_from(
            suggestions.join(
                transactions,
                sa.and_(
                    transactions.c.id == suggestions.c.transaction_id,
                    transactions.c.tenant == tenant,
                ),
            )
        )
        .where(_budget(suggestions, tenant, budget_id))
        .order_by(suggestions.c.id)
    )
    for row in _streamed(connection, query):
        yield SuggestionRecord(**row)


def _streamed(connection: Connection, query: sa.Select[Any]) -> Iterator[Any]:
    """The rows of ``query`` as mappings, fetched :data:`FETCH` at a time."""
    result = connection.execution_options(stream_results=True, yield_per=FETCH).execute(query)
    yield from result.mappings()


def restore_budget(
    tenant: str, budget_id: str, job_id: uuid.UUID, records: Iterable[Record]
) -> dict[str, int]:
    """Replace the budget's transactions and suggestions by a checked snapshot's
    ``records`` (:func:`tasks._snapshots.snapshot_records`: streamed, :data:`FETCH` rows
    an insert, never the whole snapshot in memory), in one transaction: either all of
    the snapshot is the budget afterwards, or (an error, a lost connection, a killed
    worker) the budget is exactly as it was. The budget's sync cursors go too, so its
    next sync reads every source whole again (the restored rows may be older than a
    cursor; the upsert makes the re-read harmless). Returns what was removed and
    written."""
    owner = {"tenant": tenant, "budget_id": budget_id, "job_id": job_id}
    written = {"transactions": 0, "suggestions": 0}
    with engine().begin() as connection:
        removed = count_budget(connection, tenant, budget_id)
        connection.execute(sa.delete(suggestions).where(_budget(suggestions, tenant, budget_id)))
        connection.execute(sa.delete(transactions).where(_budget(transactions, tenant, budget_id)))
        connection.execute(sa.delete(cursors).where(_budget(cursors, tenant, budget_id)))
        ids: dict[str, int] | None = None  # external_id -> row id, once every one is in
        batch: list[dict[str, Any]] = []
        for record in records:
            if isinstance(record, CategoryRecord):
                continue  # derived from the transactions: checked, not stored
            if isinstance(record, SuggestionRecord) and ids is None:
                _insert(connection, transactions, batch)  # suggestions come after them all
                ids = _transaction_ids(connection, tenant, budget_id)
            if isinstance(record, SuggestionRecord):
                assert ids is not None
                row = record.model_dump(exclude={"type", "transaction"})
                batch.append({**owner, "transaction_id": ids[record.transaction], **row})
                written["suggestions"] += 1
            else:
                batch.append({**owner, **record.model_dump(exclude={"type"})})
                written["transactions"] += 1
            if len(batch) == FETCH:
                _insert(connection, transactions if ids is None else suggestions, batch)
        _insert(connection, transactions if ids is None else suggestions, batch)
    return {
        "transactions_removed": removed["transactions"],
        "suggestions_removed": removed["suggestions"],
        "transactions_restored": written["transactions"],
        "suggestions_restored": written["suggestions"],
    }


def _insert(connection: Connection, table: sa.Table, batch: list[dict[str, Any]]) -> None:
    """Insert the rows of ``batch`` into ``table`` in one statement, and empty it."""
    if batch:
        connection.execute(sa.insert(table), batch)
        batch.clear()


def _transaction_ids(connection: Connection, tenant: str, budget_id: str) -> dict[str, int]:
    """``external_id`` -> row id of the budget's transactions."""
    query = sa.select(transactions.c.external_id, transactions.c.id).where(
        _budget(transactions, tenant, budget_id)
    )
    return {row[0]: int(row[1]) for row in connection.execute(query)}


@dataclass(frozen=True)
class RecordedSnapshot:
    """What the ledger recorded of a ``snapshot_create`` job's snapshot file."""

    status: str
    subject: str | None
    uri: str | None
    size: int | None
    sha256: str | None
    records: int | None


def recorded_snapshot(tenant: str, job_id: uuid.UUID) -> RecordedSnapshot | None:
    """The ``snapshot_create`` job ``job_id`` of ``tenant`` with its out file (None: no
    such job in this tenant; ``uri`` None: it recorded no file)."""
    query = (
        sa.select(
            jobs.c.status,
            jobs.c.subject,
            files.c.uri,
            files.c.bytes,
            files.c.sha256,
            files.c.records,
        )
        .select_from(
            jobs.outerjoin(files, sa.and_(files.c.job_id == jobs.c.id, files.c.direction == "out"))
        )
        .where(jobs.c.id == job_id, jobs.c.tenant == tenant, jobs.c.type == SNAPSHOT_TYPE)
        .order_by(files.c.id.desc())
        .limit(1)
    )
    with engine().connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return RecordedSnapshot(row.status, row.subject, row.uri, row.bytes, row.sha256, row.records)
