"""Every statement the typed tasks run against the domain tables (not the ledger).

The tables are in :mod:`models.domain`; they live in the ledger's database, so this module
uses :func:`app.db.engine`. Each function is one named statement or one short
transaction; the tasks never build SQL themselves. Ledger writes (progress, logs, files,
outcomes) do not belong here: they go through :class:`app.ledger.runtime.context.JobContext`.

Upserts use ``INSERT … ON CONFLICT`` (PostgreSQL and SQLite both have it), which makes
every write idempotent: a job delivered twice writes the same rows again.

Every function takes the ``tenant`` first and every statement filters (or writes) it:
budgets and datasets are named within a tenant, so a statement without it would reach
another tenant's rows of the same name. Tasks pass :attr:`JobContext.tenant`, the job's
ledger tenant.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy import Connection, func, inspect

from app.db import engine
from app.ledger import engines
from models.domain import Dataset, DatasetRow, Suggestion, SyncCursor, Transaction
from models.tables import jobs

# Declarative classes type ``__table__`` as a FromClause; these are plain Tables.
datasets = cast(sa.Table, Dataset.__table__)
rows = cast(sa.Table, DatasetRow.__table__)
transactions = cast(sa.Table, Transaction.__table__)
cursors = cast(sa.Table, SyncCursor.__table__)
suggestions = cast(sa.Table, Suggestion.__table__)

#: A relation name ``export`` may read after ``ledger:`` (a plain, unquoted identifier).
RELATION_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Rows fetched per round trip when streaming a dataset or a relation out.
FETCH = 1000


def _insert(connection: Connection, table: sa.Table) -> Any:
    """The ledger engine's INSERT (the one with ``on_conflict_do_*``)."""
    return engines.current().insert(table)


# -- datasets ------------------------------------------------------------------------


def open_dataset(tenant: str, name: str, columns: Sequence[str], key: str | None) -> int:
    """The id of dataset ``name`` of ``tenant``, created if new; ``columns`` are added to
    its known columns (first-seen order kept), ``key`` recorded as its key column."""
    with engine().begin() as connection:
        # Create-if-missing, then lock the row so two imports merge their columns in turn.
        connection.execute(
            _insert(connection, datasets)
            .values(tenant=tenant, name=name, columns=[])
            .on_conflict_do_nothing(index_elements=["tenant", "name"])
        )
        found = connection.execute(
            sa.select(datasets.c.id, datasets.c.columns)
            .where(datasets.c.tenant == tenant, datasets.c.name == name)
            .with_for_update()
        ).one()
        known = list(found.columns or [])
        merged = known + [column for column in columns if column not in known]
        values: dict[str, Any] = {"columns": merged, "updated_at": func.now()}
        if key is not None:
            values["key_column"] = key
        connection.execute(sa.update(datasets).where(datasets.c.id == found.id).values(values))
        return int(found.id)


@dataclass(frozen=True)
class DatasetInfo:
    """What export needs to know about a dataset before streaming its rows."""

    id: int
    columns: list[str]
    rows: int


def find_dataset(tenant: str, name: str) -> DatasetInfo | None:
    """Dataset ``name`` of ``tenant`` with its row count, or None."""
    with engine().connect() as connection:
        found = connection.execute(
            sa.select(datasets.c.id, datasets.c.columns).where(
                datasets.c.tenant == tenant, datasets.c.name == name
            )
        ).first()
        if found is None:
            return None
        count = connection.execute(
            sa.select(func.count())
            .select_from(rows)
            .where(rows.c.tenant == tenant, rows.c.dataset_id == found.id)
        ).scalar_one()
        return DatasetInfo(int(found.id), list(found.columns or []), int(count))


def forget_job_rows(tenant: str, dataset_id: int, job_id: uuid.UUID) -> int:
    """Delete the unkeyed rows an earlier execution of ``job_id`` wrote (a redelivered or
    manually retried import starts over instead of appending the same rows twice)."""
    with engine().begin() as connection:
        return connection.execute(
            sa.delete(rows).where(
                rows.c.tenant == tenant,
                rows.c.dataset_id == dataset_id,
                rows.c.job_id == job_id,
                rows.c.row_key.is_(None),
            )
        ).rowcount


def write_rows(
    tenant: str,
    dataset_id: int,
    job_id: uuid.UUID,
    batch: Sequence[tuple[str | None, dict[str, Any]]],
    also: Callable[[Connection], None] | None = None,
) -> None:
    """One batch of ``(key, data)`` rows in one transaction; keyed rows are upserted.
    ``also`` runs in the same transaction (the job notes what the batch made durable)."""
    if not batch:
        return
    # One INSERT may not touch the same key twice (PostgreSQL refuses): the last wins,
    # as it would across two statements.
    keyed = {key: data for key, data in batch if key is not None}
    owner = {"tenant": tenant, "dataset_id": dataset_id, "job_id": job_id}
    values = [{**owner, "row_key": None, "data": data} for key, data in batch if key is None] + [
        {**owner, "row_key": key, "data": data} for key, data in keyed.items()
    ]
    with engine().begin() as connection:
        statement = _insert(connection, rows).values(values)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "dataset_id", "row_key"],
                set_={
                    "data": statement.excluded.data,
                    "job_id": statement.excluded.job_id,
                    "updated_at": func.now(),
                },
            )
        )
        if also is not None:
            also(connection)


def dataset_rows(tenant: str, dataset_id: int) -> Iterator[dict[str, Any]]:
    """The rows of a dataset in import order, streamed (server-side cursor)."""
    for _, data in keyed_dataset_rows(tenant, dataset_id):
        yield data


def keyed_dataset_rows(tenant: str, dataset_id: int) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """``(row_key, data)`` of each row of a dataset in import order, streamed (server-side
    cursor: only a read is open while the caller writes its progress, as for export)."""
    with engine().connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=FETCH).execute(
            sa.select(rows.c.row_key, rows.c.data)
            .where(rows.c.tenant == tenant, rows.c.dataset_id == dataset_id)
            .order_by(rows.c.id)
        )
        for row in result:
            yield row.row_key, row.data


def dataset_row(
    tenant: str, dataset_id: int, *, key: str | None = None, position: int | None = None
) -> dict[str, Any] | None:
    """One row's data: the row of ``key``, or the ``position``-th row in import order
    (1 is the first); None when there is no such row."""
    query = sa.select(rows.c.data).where(rows.c.tenant == tenant, rows.c.dataset_id == dataset_id)
    if key is not None:
        query = query.where(rows.c.row_key == key)
    else:
        query = query.order_by(rows.c.id).offset(max(0, (position or 1) - 1)).limit(1)
    with engine().connect() as connection:
        found = connection.execute(query).first()
    return None if found is None else dict(found.data)


# -- ledger relations (``export dataset="ledger:<view>"``) ----------------------------


def relation_columns(name: str) -> list[str] | None:
    """Columns of table or view ``name`` in the ledger database, or None if there is none
    (``name`` must match :data:`RELATION_NAME`)."""
    if not RELATION_NAME.match(name):
        return None
    with engine().connect() as connection:
        inspector = inspect(connection)
        if name not in inspector.get_table_names() and name not in inspector.get_view_names():
            return None
        return [column["name"] for column in inspector.get_columns(name)]


def _relation(name: str, columns: Sequence[str]) -> sa.TableClause:
    return sa.table(name, *(sa.column(column) for column in columns))


def tenant_scope(columns: Sequence[str]) -> str | None:
    """The column through which a relation's rows are limited to one tenant: its own
    ``tenant``, else ``job_id`` (the owning job's tenant: ``job_events``, ``job_logs``,
    ``job_files``, ``job_steps``); None when it has neither and cannot be limited."""
    for column in ("tenant", "job_id"):
        if column in columns:
            return column
    return None


def _of_tenant(relation: sa.TableClause, tenant: str) -> sa.ColumnElement[bool]:
    """Rows of ``relation`` that belong to ``tenant`` (see :func:`tenant_scope`)."""
    scope = tenant_scope(list(relation.c.keys()))
    if scope == "tenant":
        return relation.c.tenant == tenant
    if scope == "job_id":
        return relation.c.job_id.in_(sa.select(jobs.c.id).where(jobs.c.tenant == tenant))
    raise ValueError(f"relation {relation.name!r} cannot be limited to a tenant")


def count_relation(name: str, columns: Sequence[str], tenant: str) -> int:
    """Rows of relation ``name`` that belong to ``tenant``."""
    relation = _relation(name, columns)
    query = sa.select(func.count()).select_from(relation).where(_of_tenant(relation, tenant))
    with engine().connect() as connection:
        return int(connection.execute(query).scalar_one())


def relation_rows(name: str, columns: Sequence[str], tenant: str) -> Iterator[Sequence[Any]]:
    """Rows of relation ``name`` that belong to ``tenant``, streamed."""
    relation = _relation(name, columns)
    query = sa.select(*relation.c).where(_of_tenant(relation, tenant))
    with engine().connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=FETCH).execute(query)
        yield from result


# -- transactions and sync cursors ----------------------------------------------------


def read_cursor(tenant: str, budget_id: str, source_key: str) -> dict[str, Any] | None:
    """The cursor of the last complete sync of ``budget_id`` from ``source_key``."""
    with engine().connect() as connection:
        return connection.execute(
            sa.select(cursors.c.cursor).where(
                cursors.c.tenant == tenant,
                cursors.c.budget_id == budget_id,
                cursors.c.source_key == source_key,
            )
        ).scalar_one_or_none()


def save_cursor(
    tenant: str, budget_id: str, source_key: str, cursor: dict[str, Any], job_id: uuid.UUID
) -> None:
    """Remember where a complete sync stopped."""
    with engine().begin() as connection:
        statement = _insert(connection, cursors).values(
            tenant=tenant, budget_id=budget_id, source_key=source_key, cursor=cursor, job_id=job_id
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant", "budget_id", "source_key"],
                set_={"cursor": cursor, "job_id": job_id, "updated_at": func.now()},
            )
        )


#: Transaction columns a sync writes (besides the key and bookkeeping).
TRANSACTION_FIELDS = (
    "booked_on",
    "payee",
    "payee_normalized",
    "amount",
    "category",
    "memo",
    "source_cursor",
)


def upsert_transactions(
    tenant: str, budget_id: str, job_id: uuid.UUID, batch: Iterable[dict[str, Any]]
) -> int:
    """Upsert transactions on ``(tenant, budget_id, external_id)`` in one transaction;
    returns how many rows were inserted or actually changed (an unchanged re-sync writes
    nothing)."""
    keyed = {record["external_id"]: record for record in batch}
    if not keyed:
        return 0
    values = [
        {**record, "tenant": tenant, "budget_id": budget_id, "job_id": job_id}
        for record in keyed.values()
    ]
    with engine().begin() as connection:
        statement = _insert(connection, transactions).values(values)
        excluded = statement.excluded
        changed = sa.or_(
            *(transactions.c[name].is_distinct_from(excluded[name]) for name in TRANSACTION_FIELDS)
        )
        upsert = statement.on_conflict_do_update(
            index_elements=["tenant", "budget_id", "external_id"],
            set_={
                **{name: excluded[name] for name in TRANSACTION_FIELDS},
                "job_id": excluded.job_id,
                "updated_at": func.now(),
            },
            where=changed,
        ).returning(transactions.c.id)
        return len(connection.execute(upsert).all())


# -- suggestions ------------------------------------------------------------------------


def _of_payee(payee: str | None) -> sa.ColumnElement[bool]:
    """Transactions of one normalised payee (``payee``), or all of them (None)."""
    return sa.true() if payee is None else transactions.c.payee_normalized == payee


def category_history(
    tenant: str, budget_id: str, payee: str | None = None
) -> list[tuple[str, str, int]]:
    """``(payee_normalized, category, count)`` over the budget's categorized transactions
    (of one normalised ``payee`` only, when given)."""
    query = (
        sa.select(transactions.c.payee_normalized, transactions.c.category, func.count())
        .where(
            transactions.c.tenant == tenant,
            transactions.c.budget_id == budget_id,
            transactions.c.category.is_not(None),
            _of_payee(payee),
        )
        .group_by(transactions.c.payee_normalized, transactions.c.category)
    )
    with engine().connect() as connection:
        return [(row[0], row[1], int(row[2])) for row in connection.execute(query)]


def count_transactions(
    tenant: str, budget_id: str, payee: str | None = None, *, uncategorized: bool = False
) -> int:
    """How many of the budget's transactions (of one normalised ``payee``; only those
    with no category) there are."""
    query = (
        sa.select(func.count())
        .select_from(transactions)
        .where(
            transactions.c.tenant == tenant,
            transactions.c.budget_id == budget_id,
            transactions.c.category.is_(None) if uncategorized else sa.true(),
            _of_payee(payee),
        )
    )
    with engine().connect() as connection:
        return int(connection.execute(query).scalar_one())


def _undecided(tenant: str) -> sa.ColumnElement[bool]:
    """The transaction has no applied or rejected suggestion (those are the user's
    decision, and the transaction is not proposed for again)."""
    decided = sa.select(suggestions.c.id).where(
        suggestions.c.tenant == tenant,
        suggestions.c.transaction_id == transactions.c.id,
        suggestions.c.status != "pending",
    )
    return ~decided.exists()


def suggestion_candidates(
    tenant: str, budget_id: str, batch_size: int, payee: str | None = None
) -> Iterator[list[tuple[int, str]]]:
    """``(transaction_id, payee_normalized)`` of the budget's uncategorized, undecided
    transactions, in id order, ``batch_size`` at a time, streamed by one read.

    Only a read is open while the job writes its progress between two batches: on SQLite
    a reader does not block the writer in WAL mode (:mod:`app.db` sets it), as with
    export's streamed rows; a write transaction would.
    """
    query = (
        sa.select(transactions.c.id, transactions.c.payee_normalized)
        .where(
            transactions.c.tenant == tenant,
            transactions.c.budget_id == budget_id,
            transactions.c.category.is_(None),
            _of_payee(payee),
            _undecided(tenant),
        )
        .order_by(transactions.c.id)
    )
    with engine().connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
            query
        )
        for batch in result.partitions():
            yield [(int(row[0]), str(row[1])) for row in batch]


@dataclass(frozen=True)
class Proposal:
    """A category proposed for one transaction (a ``pending`` suggestion to be)."""

    transaction_id: int
    category: str
    #: Share of the payee's categorized history that has ``category`` (0 to 1).
    confidence: float
    #: How many categorized transactions of the payee the proposal rests on.
    evidence: int


def replace_pending_suggestions(
    tenant: str,
    budget_id: str,
    job_id: uuid.UUID,
    proposals: Sequence[Proposal],
    payee: str | None = None,
) -> int:
    """Replace the budget's ``pending`` suggestions by ``proposals``, in one transaction
    (the old ones go and the new ones arrive together); returns how many were replaced.
    With ``payee`` (normalised), only the pending suggestions of that payee's
    transactions are replaced: the other payees' stay as they are.

    Only ``tenant``'s: another tenant's budget of the same name is not touched. A proposal
    for a transaction the user decided on meanwhile (applied or rejected a suggestion for
    it since the candidates were read) is dropped.

    The transaction holds no more than these statements, and the job writes nothing to the
    ledger while it is open: on SQLite a write transaction locks the whole file, so a
    progress write on another connection in between would wait for it, in the same
    process, until the busy timeout.
    """
    with engine().begin() as connection:
        replaced = connection.execute(
            sa.delete(suggestions).where(
                suggestions.c.tenant == tenant,
                suggestions.c.budget_id == budget_id,
                suggestions.c.status == "pending",
                suggestions.c.transaction_id.in_(
                    sa.select(transactions.c.id).where(
                        transactions.c.tenant == tenant,
                        transactions.c.budget_id == budget_id,
                        _of_payee(payee),
                    )
                )
                if payee is not None
                else sa.true(),
            )
        ).rowcount
        decided = set(
            connection.execute(
                sa.select(suggestions.c.transaction_id).where(
                    suggestions.c.tenant == tenant,
                    suggestions.c.budget_id == budget_id,
                    suggestions.c.status != "pending",
                )
            ).scalars()
        )
        owner = {"tenant": tenant, "budget_id": budget_id, "job_id": job_id, "status": "pending"}
        values = [
            {
                **owner,
                "transaction_id": p.transaction_id,
                "category": p.category,
                "confidence": p.confidence,
                "evidence": p.evidence,
            }
            for p in proposals
            if p.transaction_id not in decided
        ]
        for start in range(0, len(values), FETCH):
            connection.execute(sa.insert(suggestions), values[start : start + FETCH])
        return int(replaced)


@dataclass(frozen=True)
class Applied:
    """What became of one suggestion :func:`apply_suggestions` was asked to apply."""

    suggestion_id: int
    #: ``applied`` now, ``again`` (applied by an earlier delivery of the same job: bodies
    #: may run twice), or ``refused``.
    outcome: Literal["applied", "again", "refused"]
    #: Why it was refused (user-safe), else None.
    problem: str | None = None
    transaction_id: int | None = None


def apply_suggestions(
    tenant: str, budget_id: str, job_id: uuid.UUID, ids: Sequence[int]
) -> list[Applied]:
    """Apply the suggestions ``ids`` of the budget to their transactions, in one
    transaction: each one either sets its transaction's category and becomes ``applied``
    (both rows, together) or is refused with the reason and left as it was.

    Refused: an id that is not a suggestion of this tenant's budget; a suggestion whose
    transaction is gone, that is not ``pending`` (rejected; applied by another job), whose
    transaction has another category already, or whose category no transaction of the
    budget carries any more (unknown to the budget). A suggestion this very job applied
    (an earlier delivery of it: bodies may run twice) comes back as ``again``.

    The suggestions are locked (``FOR UPDATE`` on PostgreSQL) and the category is only
    set on a transaction that still has none, so a concurrent sync or apply is never
    overwritten.
    """
    with engine().begin() as connection:
        rows = connection.execute(
            sa.select(
                suggestions.c.id,
                suggestions.c.transaction_id,
                suggestions.c.category,
                suggestions.c.status,
                suggestions.c.job_id,
                transactions.c.id.label("found"),
                transactions.c.category.label("current"),
            )
            .select_from(
                suggestions.outerjoin(
                    transactions,
                    sa.and_(
                        transactions.c.id == suggestions.c.transaction_id,
                        transactions.c.tenant == tenant,
                        transactions.c.budget_id == budget_id,
                    ),
                )
            )
            .where(
                suggestions.c.tenant == tenant,
                suggestions.c.budget_id == budget_id,
                suggestions.c.id.in_(list(ids)),
            )
            .order_by(suggestions.c.id)
            .with_for_update(of=suggestions)
        ).all()
        found = {int(row.id): row for row in rows}
        known = set(
            connection.execute(
                sa.select(transactions.c.category)
                .distinct()
                .where(
                    transactions.c.tenant == tenant,
                    transactions.c.budget_id == budget_id,
                    transactions.c.category.in_(sorted({row.category for row in rows})),
                )
            ).scalars()
        )
        return [_apply_one(connection, found.get(i), i, job_id, known) for i in ids]


def _apply_one(
    connection: Connection, row: Any, suggestion_id: int, job_id: uuid.UUID, known: set[str]
) -> Applied:
    """One suggestion of :func:`apply_suggestions`, inside its transaction."""

    def refused(problem: str) -> Applied:
        return Applied(suggestion_id, "refused", problem, None if row is None else row.found)

    if row is None:
        return refused(
            "no such suggestion in this budget (unknown id, or gone with its transaction)"
        )
    if row.found is None:
        return refused(f"its transaction {row.transaction_id} is gone")
    if row.status == "applied":
        if row.job_id == job_id:
            return Applied(suggestion_id, "again", None, row.found)
        return refused("is applied already (by another job): only pending suggestions are applied")
    if row.status != "pending":
        return refused(f"is {row.status}: only pending suggestions are applied")
    if row.current is not None and row.current != row.category:
        return refused(
            f"its transaction is categorised as {row.current!r} already, not {row.category!r}"
        )
    if row.current is None and row.category not in known:
        return refused(
            f"category {row.category!r} is unknown to the budget (no transaction carries it)"
        )
    now = {"job_id": job_id, "updated_at": func.now()}
    if row.current is None:
        set_category = connection.execute(
            sa.update(transactions)
            .where(transactions.c.id == row.found, transactions.c.category.is_(None))
            .values(category=row.category, **now)
        )
        if set_category.rowcount != 1:
            return refused("its transaction was categorised meanwhile")
    connection.execute(
        sa.update(suggestions)
        .where(suggestions.c.id == suggestion_id)
        .values(status="applied", **now)
    )
    return Applied(suggestion_id, "applied", None, row.found)


def normalize_payee(payee: str) -> str:
    """The payee as suggestions group it: case-folded letters only, single spaces
    (``"AMAZON Mktp #1234"`` and ``"amazon mktp  99"`` are both ``"amazon mktp"``):
    card numbers, store numbers and punctuation vary between bookings of one payee."""
    return " ".join(_NOT_LETTERS.sub(" ", payee.casefold()).split())[:256]


_NOT_LETTERS = re.compile(r"[\W\d_]+")
