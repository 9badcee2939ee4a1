"""Every job type end to end, on both backends: a real ``celery -A app worker``
subprocess, real inputs, the outcome read back from the ledger with SQL.

The backends:

- ``postgresql``: the test session's PostgreSQL ledger and Redis broker, with the
  session's worker (tests/conftest.py);
- ``embedded``: the default with no ``JOBLEDGER_*`` variable, as on a laptop: an SQLite
  ledger and the filesystem broker, both under ``./var`` of a scratch folder, and a
  worker started there for this module. Its one variable, ``JOBLEDGER_DATABASE_SOURCES``,
  names the SQLite file the ``sync (database source)`` case reads: with none, no
  database source exists at all.

Producers run as subprocesses on both backends (``python -c`` with the backend's
environment), as a user's code would. Every case checks the job's row, that its events
(and its steps' events) are a valid walk of the state machine
(:func:`app.ledger.rules.states.is_valid_walk`), that ``created_at <= started_at <=
completed_at``, and what the job left: rows, files, suggestions, purged or failed jobs.
Maintenance cases set their scene with back-dated rows, never by waiting for the clock.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from app import db
from app.ledger.rules.states import TERMINAL, JobStatus, is_valid_walk
from app.testing.workers import start_worker
from models.counts import JobStatusTotal
from models.domain import DatasetRow, Suggestion, SyncCursor, Transaction
from models.tables import events, files, jobs, steps
from tests.conftest import SOURCE_DIR
from tests.support import sources

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {status.value for status in TERMINAL}
transactions = cast(sa.Table, Transaction.__table__)
suggestions = cast(sa.Table, Suggestion.__table__)
cursors = cast(sa.Table, SyncCursor.__table__)
dataset_rows = cast(sa.Table, DatasetRow.__table__)
status_totals = cast(sa.Table, JobStatusTotal.__table__)

HEADER = ["id", "date", "payee", "amount", "category", "updated_at"]
#: A bank file: 8 categorized transactions (the history) and 4 without a category.
BANK = [
    ["t1", "2024-01-02", "COFFEE SHOP #12", "-3.50", "Coffee", "2024-01-02T10:00:00"],
    ["t2", "2024-01-05", "Coffee Shop #31", "-4.10", "Coffee", "2024-01-05T10:00:00"],
    ["t3", "2024-01-09", "coffee shop", "-2.90", "Coffee", "2024-01-09T10:00:00"],
    ["t4", "2024-01-12", "Coffee Shop 12", "-15.00", "Food", "2024-01-12T10:00:00"],
    ["t5", "2024-01-03", "Grocer 55", "-40.00", "Groceries", "2024-01-03T10:00:00"],
    ["t6", "2024-01-10", "GROCER 99", "-62.10", "Groceries", "2024-01-10T10:00:00"],
    ["t7", "2024-01-01", "Rent Co", "-900", "Housing", "2024-01-01T10:00:00"],
    ["t8", "2024-02-01", "Rent Co.", "-900", "Bills", "2024-02-01T10:00:00"],
    ["u1", "2024-02-03", "Coffee Shop #7", "-3.20", "", "2024-02-03T10:00:00"],
    ["u2", "2024-02-04", "grocer", "-12.00", "", "2024-02-04T10:00:00"],
    ["u3", "2024-03-01", "RENT CO", "-900", "", "2024-03-01T10:00:00"],
    ["u4", "2024-02-05", "Unknown Payee", "-1.00", "", "2024-02-05T10:00:00"],
]
#: What the history says, worked out by hand: transaction -> (category, confidence, evidence).
SUGGESTED = {
    "u1": ("Coffee", 0.75, 4),  # coffee shop: Coffee 3 of 4
    "u2": ("Groceries", 1.0, 2),  # grocer: Groceries 2 of 2
    "u3": ("Bills", 0.5, 2),  # rent co: a tie, the alphabetically first wins
}


# -- the backends ------------------------------------------------------------------------


@dataclass
class Backend:
    """Where a case runs: how to produce jobs, where inputs go, how to read the ledger."""

    name: str
    env: dict[str, str]
    cwd: Path
    ledger: sa.Engine
    #: A folder file sources may be read from (under the backend's source roots).
    inputs: Path
    #: The folder of the database source ``bank`` (its file is ``bank.db``).
    bank_dir: Path
    worker_log: Path

    def produce(self, code: str) -> Any:
        """Run ``code`` in a producer subprocess (``tasks`` imported, ``ledger`` is
        :mod:`app.ledger.transitions`); it sets ``out``, which comes back as JSON."""
        script = "import json, uuid\nfrom app.ledger import transitions as ledger\n"
        script += "from tasks import *\nout = None\n" + textwrap.dedent(code)
        script += "\nprint('OUT=' + json.dumps(out))\n"
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        line = [row for row in done.stdout.splitlines() if row.startswith("OUT=")][-1]
        return json.loads(line.removeprefix("OUT="))

    def rows(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        with self.ledger.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def write(self, statement: sa.Executable) -> None:
        with self.ledger.begin() as connection:
            connection.execute(statement)

    def job(self, job_id: str) -> dict[str, Any] | None:
        found = self.rows(sa.select(jobs).where(jobs.c.id == uuid.UUID(job_id)))
        return found[0] if found else None

    def finished(self, job_id: str, timeout: float = 90) -> dict[str, Any]:
        """The job's row once it is terminal (the filesystem broker polls each second)."""
        deadline = time.monotonic() + timeout
        row = self.job(job_id)
        while time.monotonic() < deadline:
            row = self.job(job_id)
            if row is not None and row["status"] in FINISHED:
                return row
            time.sleep(0.1)  # polling interval of the check, not a stand-in for work
        raise AssertionError(f"job {job_id} not finished after {timeout} s: {row}\n{self.log()}")

    def log(self) -> str:
        return self.worker_log.read_text(errors="replace")[-4000:]


def _ledger_env_free() -> dict[str, str]:
    """The test session's environment without any ``JOBLEDGER_*`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The embedded default in a scratch folder: migrated ledger, a worker running there."""
    folder = tmp_path_factory.mktemp("embedded")
    env = _ledger_env_free()
    env["PYTHONPATH"] = str(ROOT)
    bank_dir = folder / "sources"
    env["JOBLEDGER_DATABASE_SOURCES"] = json.dumps(
        {
            "bank": {
                "url": f"sqlite:///{bank_dir / 'bank.db'}",
                "tables": ["bank_tx"],
                "tenants": ["*"],
            }
        }
    )
    jobledger = str(Path(sys.executable).parent / "jobledger")
    subprocess.run([jobledger, "migrate"], cwd=folder, env=env, check=True, timeout=120)
    # the project's launcher; "ready." in its log, as this process cannot ping over files
    worker = start_worker(folder, env=env, cwd=folder, prefix="embedded", ready="log", timeout=90)
    ledger = sa.create_engine(f"sqlite:///{folder / 'var' / 'jobledger.sqlite3'}")
    try:
        yield Backend(
            name="embedded",
            env=env,
            cwd=folder,
            ledger=ledger,
            inputs=folder / "var" / "data",  # the default source root, relative to the cwd
            bank_dir=bank_dir,
            worker_log=worker.log_path,
        )
    finally:
        worker.stop(timeout=60)  # warm shutdown: the filesystem broker takes a poll to notice
        ledger.dispose()


@pytest.fixture(params=["postgresql", "embedded"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "embedded":
        embedded: Backend = request.getfixturevalue("embedded")
        inputs = embedded.inputs / uuid.uuid4().hex[:8]
        inputs.mkdir(parents=True)
        return Backend(**{**embedded.__dict__, "inputs": inputs})
    worker = request.getfixturevalue("worker")  # the session's worker, on Redis
    return Backend(
        name="postgresql",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        ledger=db.engine(),
        inputs=tmp_path,  # the session's JOBLEDGER_SOURCE_ROOTS is the temp folder
        bank_dir=SOURCE_DIR,
        worker_log=worker.log_path,
    )


# -- checks shared by every case ------------------------------------------------------------


def assert_recorded(backend: Backend, job_id: str, status: str) -> dict[str, Any]:
    """The job ended ``status``; its events and its steps' events are valid walks and its
    times are in order. Returns its row."""
    row = backend.finished(job_id)
    assert row["status"] == status, (row["failure_reason"], backend.log())
    history = backend.rows(
        sa.select(events.c.step_id, events.c.from_status, events.c.to_status)
        .where(events.c.job_id == uuid.UUID(job_id))
        .order_by(events.c.id)
    )
    by_target: dict[Any, list[tuple[JobStatus | None, JobStatus]]] = {}
    for event in history:
        walk = by_target.setdefault(event["step_id"], [])
        source = None if event["from_status"] is None else JobStatus(event["from_status"])
        walk.append((source, JobStatus(event["to_status"])))
    assert None in by_target, history
    for target, walk in by_target.items():
        assert is_valid_walk(walk), (target, walk)
    assert by_target[None][-1][1] == status
    _assert_times_in_order(row)
    for step in backend.rows(sa.select(steps).where(steps.c.job_id == uuid.UUID(job_id))):
        _assert_times_in_order(step)
    return row


def _assert_times_in_order(row: dict[str, Any]) -> None:
    created, started, completed = row["created_at"], row["started_at"], row["completed_at"]
    assert completed is not None
    # sub-second times on both (SQLite's CURRENT_TIMESTAMP had whole seconds)
    assert any(moment.microsecond for moment in (created, started, completed) if moment)
    if started is not None:
        assert created <= started <= completed, (created, started, completed)
    else:
        assert created <= completed, (created, completed)


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sales(backend: Backend) -> Path:
    """50 orders, two of them with an amount that is not a number."""
    rows = [
        [n, f"customer-{n % 7}", "n/a" if n in (7, 31) else f"{n * 1.5:.2f}"] for n in range(1, 51)
    ]
    return write_csv(backend.inputs / "sales.csv", ["order_id", "customer", "amount"], rows)


def suggestions_of(backend: Backend, budget: str) -> dict[str, tuple[str, float, int]]:
    found = backend.rows(
        sa.select(
            transactions.c.external_id,
            suggestions.c.category,
            suggestions.c.confidence,
            suggestions.c.evidence,
        )
        .join(transactions, transactions.c.id == suggestions.c.transaction_id)
        .where(suggestions.c.budget_id == budget, suggestions.c.status == "pending")
    )
    return {r["external_id"]: (r["category"], r["confidence"], r["evidence"]) for r in found}


def count(backend: Backend, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count().label("n")).select_from(table).where(*where)
    return int(backend.rows(query)[0]["n"])


def budget() -> str:
    return f"household-{uuid.uuid4().hex[:8]}"


# -- one case per job type -----------------------------------------------------------------


def case_import(backend: Backend) -> None:
    source = sales(backend)
    job_id = backend.produce(f"""
        out = import_data.delay({str(source)!r}, "sales", key="order_id",
                                columns={{"amount": "decimal"}}).id
    """)
    row = assert_recorded(backend, job_id, "partial")
    assert row["result"]["records_imported"] == 48
    assert row["result"]["records_failed"] == 2
    assert sorted(error["row"] for error in row["errors"]) == [8, 32]  # header is row 1
    assert count(backend, dataset_rows, dataset_rows.c.job_id == uuid.UUID(job_id)) == 48


def case_export(backend: Backend) -> None:
    source = sales(backend)
    imported = backend.produce(f"out = import_data.delay({str(source)!r}, 'orders').id")
    assert_recorded(backend, imported, "succeeded")
    job_id = backend.produce("out = export_data.delay('orders', format='csv').id")
    row = assert_recorded(backend, job_id, "succeeded")
    written = Path(row["result"]["path"])
    assert row["result"]["records"] == 50
    assert row["result_url"] == written.as_uri()
    with written.open(newline="") as handle:
        exported = list(csv.reader(handle))
    assert exported[0] == ["order_id", "customer", "amount"]
    assert len(exported) == 51
    recorded = backend.rows(sa.select(files).where(files.c.job_id == uuid.UUID(job_id)))
    assert [(f["direction"], f["records"], f["bytes"]) for f in recorded] == [
        ("out", 50, written.stat().st_size)
    ]


def case_sync(backend: Backend) -> None:
    source = write_csv(backend.inputs / "bank.csv", HEADER, BANK)
    household = budget()
    job_id = backend.produce(f"out = sync.delay({household!r}, {str(source)!r}).id")
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["records_written"] == 12
    assert count(backend, transactions, transactions.c.budget_id == household) == 12
    saved = backend.rows(sa.select(cursors.c.cursor).where(cursors.c.budget_id == household))
    assert [c["cursor"] for c in saved] == [{"field": "updated_at", "value": "2024-03-01T10:00:00"}]


def case_sync_from_a_database_source(backend: Backend) -> None:
    SOURCE_DIR.mkdir(parents=True, exist_ok=True)
    made = sources.sqlite_bank([tuple(record) for record in BANK])
    made.close()
    backend.bank_dir.mkdir(parents=True, exist_ok=True)
    if backend.bank_dir != SOURCE_DIR:
        (backend.bank_dir / "bank.db").write_bytes((SOURCE_DIR / "bank.db").read_bytes())
    household = budget()
    job_id = backend.produce(f"""
        out = sync.delay({household!r}, {{"connection": "bank", "table": "bank_tx"}}).id
    """)
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["records_written"] == 12
    assert count(backend, transactions, transactions.c.budget_id == household) == 12


def case_suggest(backend: Backend) -> None:
    source = write_csv(backend.inputs / "bank.csv", HEADER, BANK)
    household = budget()
    synced = backend.produce(f"out = sync.delay({household!r}, {str(source)!r}).id")
    assert_recorded(backend, synced, "succeeded")
    job_id = backend.produce(f"out = suggest.delay({household!r}, batch_size=2).id")
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["suggestions"] == 3
    assert row["result"]["transactions_considered"] == 4
    assert suggestions_of(backend, household) == SUGGESTED


def case_sync_and_suggest(backend: Backend) -> None:
    source = write_csv(backend.inputs / "bank.csv", HEADER, BANK)
    household = budget()
    job_id = backend.produce(f"out = sync_and_suggest.delay({household!r}, {str(source)!r}).id")
    row = assert_recorded(backend, job_id, "succeeded")
    chain = backend.rows(
        sa.select(steps.c.position, steps.c.step_type, steps.c.status)
        .where(steps.c.job_id == uuid.UUID(job_id))
        .order_by(steps.c.position)
    )
    assert [tuple(step.values()) for step in chain] == [
        (1, "sync", "succeeded"),
        (2, "suggest", "succeeded"),
    ]
    assert row["result"]["sync"]["records_written"] == 12
    assert row["result"]["suggest"]["suggestions"] == 3
    assert suggestions_of(backend, household) == SUGGESTED


def case_scheduled_sync_and_suggest(backend: Backend) -> None:
    source = write_csv(backend.inputs / "bank.csv", HEADER, BANK)
    household = budget()
    job_id = backend.produce(
        f"out = scheduled_sync_and_suggest.delay({household!r}, {str(source)!r}).id"
    )
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["type"] == "scheduled_sync_and_suggest"
    assert row["result"]["suggest"]["suggestions"] == 3
    assert suggestions_of(backend, household) == SUGGESTED


def _suggested_budget(backend: Backend) -> str:
    """A budget synced from :data:`BANK` with its suggestions made (:data:`SUGGESTED`)."""
    source = write_csv(backend.inputs / "bank.csv", HEADER, BANK)
    household = budget()
    job_id = backend.produce(f"out = sync_and_suggest.delay({household!r}, {str(source)!r}).id")
    assert_recorded(backend, job_id, "succeeded")
    return household


def case_suggestions_apply(backend: Backend) -> None:
    household = _suggested_budget(backend)
    ids = [
        r["id"]
        for r in backend.rows(
            sa.select(suggestions.c.id)
            .where(suggestions.c.budget_id == household)
            .order_by(suggestions.c.id)
        )
    ]
    job_id = backend.produce(
        f"out = suggestions_apply.delay({household!r}, {[*ids, 999_999]!r}, batch_size=2).id"
    )
    row = assert_recorded(backend, job_id, "partial")
    assert row["result"] == {"requested": 4, "applied": 3, "already_applied": 0, "failed": 1}
    assert [error["suggestion_id"] for error in row["errors"]] == [999_999]
    categorized = backend.rows(
        sa.select(transactions.c.external_id, transactions.c.category).where(
            transactions.c.budget_id == household, transactions.c.external_id.like("u%")
        )
    )
    assert {r["external_id"]: r["category"] for r in categorized} == {
        **{external_id: category for external_id, (category, _, _) in SUGGESTED.items()},
        "u4": None,
    }
    assert suggestions_of(backend, household) == {}  # none pending: all applied


def case_suggestions_retry_payee(backend: Backend) -> None:
    household = _suggested_budget(backend)
    job_id = backend.produce(
        f"out = suggestions_retry_payee.delay({household!r}, 'Coffee Shop #99').id"
    )
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["payee"] == "coffee shop"
    assert row["result"]["replaced_pending"] == 1
    assert suggestions_of(backend, household) == SUGGESTED  # the same history, the same


def _snapshot(backend: Backend, household: str) -> dict[str, Any]:
    job_id = backend.produce(f"out = snapshot_create.delay({household!r}).id")
    return assert_recorded(backend, job_id, "succeeded")


def case_snapshot_create(backend: Backend) -> None:
    household = _suggested_budget(backend)
    row = _snapshot(backend, household)
    path = Path(row["result"]["path"])
    (recorded,) = backend.rows(sa.select(files).where(files.c.job_id == row["id"]))
    assert (recorded["direction"], recorded["uri"]) == ("out", path.as_uri())
    assert recorded["bytes"] == path.stat().st_size
    assert recorded["records"] == 5 + 12 + 3  # categories, transactions, suggestions
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def case_snapshot_redownload(backend: Backend) -> None:
    household = _suggested_budget(backend)
    snapshot = _snapshot(backend, household)
    backend.write(sa.delete(suggestions).where(suggestions.c.budget_id == household))
    backend.write(
        sa.update(transactions).where(transactions.c.budget_id == household).values(category=None)
    )
    job_id = backend.produce(
        f"out = snapshot_redownload.delay({household!r}, snapshot_job={str(snapshot['id'])!r}).id"
    )
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["transactions_restored"] == 12
    assert suggestions_of(backend, household) == SUGGESTED
    assert (
        count(
            backend,
            transactions,
            transactions.c.budget_id == household,
            transactions.c.category.is_not(None),
        )
        == 8
    )


def _canceled_while_queued(backend: Backend) -> str:
    """A job that ended (canceled before any worker took it): ready to be back-dated."""
    source = sales(backend)
    return str(
        backend.produce(f"""
        nobody = "jobledger-test-nobody-" + uuid.uuid4().hex[:8]
        job = import_data.apply_async(kwargs={{"source": {str(source)!r}, "dataset": "old"}},
                                      queue=nobody)
        ledger.request_cancel(uuid.UUID(job.id), actor="cli", reason="e2e: never to run")
        out = job.id
    """)
    )


def _backdate(backend: Backend, job_id: str, **ago: timedelta) -> None:
    """Move the job's times into the past (``created_at=…``: how long ago)."""
    now = datetime.now(UTC)
    backend.write(
        sa.update(jobs)
        .where(jobs.c.id == uuid.UUID(job_id))
        .values({column: now - delta for column, delta in ago.items()})
    )


def case_purge(backend: Backend) -> None:
    old = _canceled_while_queued(backend)
    recent = _canceled_while_queued(backend)
    assert_recorded(backend, old, "canceled")
    _backdate(backend, old, created_at=timedelta(days=41), completed_at=timedelta(days=40))
    job_id = backend.produce("out = purge.delay(older_than_days=30).id")
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["deleted"] == 1
    assert backend.job(old) is None
    assert count(backend, events, events.c.job_id == uuid.UUID(old)) == 0
    assert backend.job(recent) is not None


def case_lifeline(backend: Backend) -> None:
    source = sales(backend)
    orphan = backend.produce(f"""
        nobody = "jobledger-test-nobody-" + uuid.uuid4().hex[:8]
        job = import_data.apply_async(kwargs={{"source": {str(source)!r}, "dataset": "lost"}},
                                      queue=nobody)
        ledger.record_started(uuid.UUID(job.id), celery_task_id=job.id, execution_id="gone",
                              worker="gone@nowhere")
        out = job.id
    """)
    assert backend.job(orphan)["status"] == "running"  # type: ignore[index]
    _backdate(backend, orphan, heartbeat_at=timedelta(minutes=10), updated_at=timedelta(minutes=10))
    job_id = backend.produce("out = lifeline.delay(timeout=60).id")
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["failed"] == [orphan]
    lost = assert_recorded(backend, orphan, "failed")
    assert lost["failure_reason"].startswith("worker lost")
    last = backend.rows(
        sa.select(events.c.actor).where(events.c.job_id == uuid.UUID(orphan)).order_by(events.c.id)
    )[-1]
    assert last["actor"] == "lifeline"


def case_settle_counts(backend: Backend) -> None:
    done = _canceled_while_queued(backend)
    assert_recorded(backend, done, "canceled")
    _backdate(backend, done, created_at=timedelta(minutes=11), completed_at=timedelta(minutes=10))
    job_id = backend.produce("out = settle_counts.delay().id")
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["result"]["settled"] == (1 if backend.name == "postgresql" else 0)
    settled = backend.rows(
        sa.select(status_totals.c.jobs).where(
            status_totals.c.type == "import", status_totals.c.status == "canceled"
        )
    )
    if backend.name == "postgresql":
        assert [r["jobs"] for r in settled] == [1]
    else:  # SQLite counts are read from ``jobs`` itself: nothing to settle, by design
        assert settled == []


def case_validation(backend: Backend) -> None:
    source = sales(backend)
    dataset = f"orders-{uuid.uuid4().hex[:8]}"
    imported = backend.produce(f"out = import_data.delay({str(source)!r}, {dataset!r}).id")
    assert_recorded(backend, imported, "succeeded")
    job_id = backend.produce(f"""
        out = validation.delay({dataset!r}, [
            {{"rule": "required", "field": "customer"}},
            {{"rule": "type", "field": "amount", "type": "decimal"}},
            {{"rule": "unique", "field": "order_id"}},
        ]).id
    """)
    row = assert_recorded(backend, job_id, "partial")
    assert sorted((e["row"], e["rule"]) for e in row["errors"]) == [(7, "type"), (31, "type")]
    assert row["result"]["failed_by_rule"] == {"required": 0, "type": 2, "unique": 0}


def case_test_run(backend: Backend) -> None:
    source = sales(backend)
    dataset = f"orders-{uuid.uuid4().hex[:8]}"
    imported = backend.produce(
        f"out = import_data.delay({str(source)!r}, {dataset!r}, key='order_id').id"
    )
    assert_recorded(backend, imported, "succeeded")
    job_id = backend.produce(f"""
        out = test_run.delay("smoke", [
            {{"check": "job_succeeded", "job": {imported!r}}},
            {{"check": "row_count", "dataset": {dataset!r}, "equals": 50}},
            {{"check": "field_value", "dataset": {dataset!r}, "key": "7", "field": "amount",
              "equals": "n/a"}},
            {{"check": "row_count", "dataset": {dataset!r}, "max": 10}},
        ]).id
    """)
    row = assert_recorded(backend, job_id, "partial")
    assert [case["passed"] for case in row["result"]["cases"]] == [True, True, True, False]


def case_interface_run(backend: Backend) -> None:
    inbox = Path(
        backend.produce(
            "from tasks.interface_run import tenant_area\n"
            "out = str(tenant_area('default') / 'inbox')"
        )
    )
    name = f"ts-{uuid.uuid4().hex[:8]}.csv"
    write_csv(inbox / name, ["entry_id", "hours"], [[n, f"{n}.5"] for n in range(1, 31)])
    job_id = backend.produce(
        f"out = interface_run.delay({name!r}, 'timesheets', key='entry_id', interface='ta-in').id"
    )
    row = assert_recorded(backend, job_id, "succeeded")
    assert row["metadata"]["files_processed"] == 1
    assert row["metadata"]["records_imported"] == 30
    assert not (inbox / name).exists()
    assert (inbox.parent / "archive" / f"{job_id}-{name}").exists()


CASES: dict[str, Callable[[Backend], None]] = {
    "import": case_import,
    "export": case_export,
    "sync": case_sync,
    "sync (database source)": case_sync_from_a_database_source,
    "suggest": case_suggest,
    "sync_and_suggest": case_sync_and_suggest,
    "scheduled_sync_and_suggest": case_scheduled_sync_and_suggest,
    "suggestions_apply": case_suggestions_apply,
    "suggestions_retry_payee": case_suggestions_retry_payee,
    "snapshot_create": case_snapshot_create,
    "snapshot_redownload": case_snapshot_redownload,
    "purge": case_purge,
    "lifeline": case_lifeline,
    "settle_counts": case_settle_counts,
    "validation": case_validation,
    "test_run": case_test_run,
    "interface_run": case_interface_run,
}


def test_every_job_type_has_a_case() -> None:
    from app.celery import app

    app.loader.import_default_modules()
    registered = {name for name, task in app.tasks.items() if task.__module__.startswith("tasks.")}
    assert {name.split(" ")[0] for name in CASES} == registered


@pytest.mark.parametrize("job_type", list(CASES))
def test_job_type_end_to_end(job_type: str, backend: Backend) -> None:
    CASES[job_type](backend)
