"""``snapshot_create`` and ``snapshot_redownload`` end to end: a real worker, Redis and
PostgreSQL; the snapshot files read from disk, the budget's rows and the ledger's file
records read with SQL. Every failed check leaves the budget row for row as it was."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from app.exceptions import InvalidPayload
from app.ledger.transitions import request_cancel
from tasks._snapshots import Header, SnapshotWriter, TransactionRecord, read_snapshot
from tasks.snapshot_create import snapshot_create
from tasks.snapshot_redownload import snapshot_redownload
from tests.support import api, budgets, domain
from tests.support.ledger import transitions, wait_for_status
from tests.support.processes import start_worker

# The snapshot folder the session worker inherits (set before any worker starts).
if "JOBLEDGER_SNAPSHOT_DIR" not in os.environ:
    os.environ["JOBLEDGER_SNAPSHOT_DIR"] = tempfile.mkdtemp(prefix="jobledger-snapshots-")
    atexit.register(shutil.rmtree, os.environ["JOBLEDGER_SNAPSHOT_DIR"], ignore_errors=True)
SNAPSHOTS = Path(os.environ["JOBLEDGER_SNAPSHOT_DIR"]).resolve()

pytestmark = pytest.mark.usefixtures("worker")

TENANT, OTHER, finished = budgets.TENANT, budgets.OTHER, budgets.finished
ROWS = budgets.ROWS


def seeded(budget: str) -> None:
    """``budget`` in both tenants (the other's with a marker row of its own), each with a
    pending, an applied and a rejected suggestion."""
    for tenant in (TENANT, OTHER):
        tx = budgets.seed(tenant, budget, [*ROWS, (f"only-{tenant}", "Marker", "Mark")])
        budgets.suggest(tenant, budget, tx["u1"], "Coffee", confidence=1.0)
        budgets.suggest(tenant, budget, tx["u2"], "Groceries", status="applied")
        budgets.suggest(tenant, budget, tx["u3"], "Coffee", status="rejected", confidence=0.25)


def create(budget: str, tenant: str = TENANT) -> dict[str, Any]:
    done = finished(snapshot_create.apply_async(args=(budget,), tenant=tenant).id)
    assert done["status"] == "succeeded", done["failure_reason"]
    return done


def redownload(budget: str, tenant: str = TENANT, **kwargs: Any) -> dict[str, Any]:
    return finished(
        snapshot_redownload.apply_async(args=(budget,), kwargs=kwargs, tenant=tenant).id
    )


def failed_check(done: dict[str, Any], check: str) -> None:
    assert done["status"] == "failed", done
    assert done["failure_reason"].startswith(f"snapshot check {check!r} failed: "), done
    assert done["errors"][0]["check"] == check


def test_snapshot_create_writes_the_tenants_budget_and_records_the_file() -> None:
    budget = domain.unique("household")
    seeded(budget)

    done = create(budget)

    path = Path(done["result"]["path"])
    assert path == SNAPSHOTS / TENANT / budget / f"{done['id']}.snapshot.jsonl"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no .part left
    (recorded,) = domain.files(done["id"])
    assert (recorded["direction"], recorded["uri"]) == ("out", path.as_uri())
    assert recorded["bytes"] == path.stat().st_size == done["result"]["size"]
    assert recorded["sha256"] == domain.sha256_of(path) == done["result"]["sha256"]
    assert recorded["records"] == done["result"]["records"] == 3 + 10 + 3
    assert done["result_url"] == path.as_uri()
    with path.open("rb") as handle:
        contents = read_snapshot(handle, expect_tenant=TENANT, expect_budget=budget)
    assert [(c.name, c.transactions) for c in contents.categories] == [
        ("Coffee", 2),
        ("Groceries", 1),
        ("Mark", 1),
    ]
    assert {t.external_id for t in contents.transactions} == {
        *dict.fromkeys(r[0] for r in ROWS),
        "only-acme",
    }
    assert {(s.transaction, s.status) for s in contents.suggestions} == {
        ("u1", "pending"),
        ("u2", "applied"),
        ("u3", "rejected"),
    }
    assert b"only-other" not in path.read_bytes()


def test_snapshot_create_through_the_api_acts_for_the_keys_tenant() -> None:
    budget = domain.unique("api")
    seeded(budget)
    for client in api.client():
        response = client.post(
            "/jobs",
            json={"type": "snapshot_create", "payload": {"budget_id": budget}},
            headers=api.ACME,
        )
        assert response.status_code == 202, response.text
        done = finished(response.json()["id"])
        refused = client.post(
            "/jobs",
            json={"type": "snapshot_create", "payload": {"budget_id": budget, "x": 1}},
            headers=api.ACME,
        )
        assert refused.status_code == 422
        assert "payload.x" in refused.text
    assert done["status"] == "succeeded", done["failure_reason"]
    assert done["tenant"] == TENANT
    assert Path(done["result"]["path"]).is_relative_to(SNAPSHOTS / TENANT)


def test_snapshot_of_a_budget_with_nothing_fails_naming_budget_id() -> None:
    budget = domain.unique("empty")
    seeded(budget)  # in both tenants, but not in tenant "third"

    done = finished(snapshot_create.apply_async(args=(budget,), tenant="third").id)

    assert done["status"] == "failed"
    assert done["failure_reason"].startswith("field 'budget_id': ")
    assert not (SNAPSHOTS / "third" / budget).exists() or not any(
        (SNAPSHOTS / "third" / budget).iterdir()
    )
    assert domain.files(done["id"]) == []
    with pytest.raises(InvalidPayload) as refused:
        snapshot_create.delay("../escape")
    assert "budget_id" in refused.value.fields


def test_snapshot_create_canceled_mid_run_leaves_no_file() -> None:
    budget = domain.unique("cancel")
    seeded(budget)
    with budgets.holding("LOCK TABLE suggestions IN ACCESS EXCLUSIVE MODE"):
        job_id = snapshot_create.apply_async(args=(budget,), tenant=TENANT).id
        budgets.wait_for_lock_waiter("the snapshot's read waiting for the suggestions")
        # mid-run in the ledger too: its lazy start is written JOBLEDGER_LAZY_START_SECONDS
        # into the run (a cancel before that cancels the job as queued)
        wait_for_status(job_id, "running")
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="stop") == "requested"

    done = finished(job_id)
    assert done["status"] == "canceled"
    assert transitions(job_id)[-1] == ("running", "canceled")
    folder = SNAPSHOTS / TENANT / budget
    assert list(folder.iterdir()) == []  # neither the snapshot nor its .part
    assert domain.files(job_id) == []


def test_redownload_restores_the_budget_exactly_as_it_was_snapshotted() -> None:
    budget = domain.unique("restore")
    seeded(budget)
    snapshotted = budgets.state(TENANT, budget)
    other = budgets.rows_of(OTHER, budget)
    created = create(budget)
    # the budget moves on: a transaction gone, one recategorised, one new, a decision
    domain.execute(
        "DELETE FROM transactions WHERE tenant = :t AND budget_id = :b AND external_id = 'h3'",
        t=TENANT,
        b=budget,
    )
    domain.execute(
        "UPDATE transactions SET category = 'Cafe' WHERE tenant = :t AND budget_id = :b "
        "AND external_id = 'h1'",
        t=TENANT,
        b=budget,
    )
    budgets.seed(TENANT, budget, [("n1", "New Shop", "New")])
    domain.execute(
        "UPDATE suggestions SET status = 'rejected' WHERE tenant = :t AND budget_id = :b",
        t=TENANT,
        b=budget,
    )
    domain.execute(
        "INSERT INTO sync_cursors (tenant, budget_id, source_key, cursor) "
        'VALUES (:t, :b, \'file:///bank.csv\', \'{"field": "updated_at", "value": 9}\')',
        t=TENANT,
        b=budget,
    )
    assert budgets.state(TENANT, budget) != snapshotted

    checked = redownload(budget, snapshot_job=created["id"], restore=False)
    assert checked["status"] == "succeeded", checked["failure_reason"]
    assert checked["result"]["restored"] is False
    assert budgets.state(TENANT, budget) != snapshotted  # checked only

    done = redownload(budget, snapshot_job=created["id"])

    assert done["status"] == "succeeded", done["failure_reason"]
    assert budgets.state(TENANT, budget) == snapshotted
    assert (
        domain.query(
            "SELECT * FROM sync_cursors WHERE tenant = :t AND budget_id = :b", t=TENANT, b=budget
        )
        == []
    )
    assert budgets.rows_of(OTHER, budget) == other
    assert done["result"]["restored"] is True
    assert done["result"]["transactions_restored"] == 10
    assert done["result"]["transactions_removed"] == 10  # 10 - h3 + n1
    assert done["result"]["sha256"] == created["result"]["sha256"]
    (fetched,) = domain.files(done["id"])
    assert (fetched["direction"], fetched["uri"], fetched["sha256"]) == (
        "in",
        created["result_url"],
        created["result"]["sha256"],
    )
    again = redownload(budget, snapshot_job=created["id"])  # a second run: the same budget
    assert again["status"] == "succeeded"
    assert budgets.state(TENANT, budget) == snapshotted


def test_each_failed_check_is_named_and_leaves_the_budget_untouched(tmp_path: Path) -> None:
    budget = domain.unique("checks")
    seeded(budget)
    created = create(budget)
    path = Path(created["result"]["path"])
    original = path.read_bytes()
    before = budgets.rows_of(TENANT, budget)
    folder = SNAPSHOTS / TENANT

    def source(name: str, body: bytes) -> str:
        copy = folder / name
        copy.write_bytes(body)
        return str(copy)

    # where it was written: a changed byte, a cut file
    path.write_bytes(original.replace(b"Coffee Shop 7", b"Coffee Shop 8"))
    failed_check(redownload(budget, snapshot_job=created["id"]), "sha256")
    path.write_bytes(original[:-10])
    failed_check(redownload(budget, snapshot_job=created["id"]), "size")
    path.write_bytes(original)
    # from a source in the tenant's folder
    cut = source("cut.snapshot.jsonl", original[: original.rindex(b'{"end"')])
    failed_check(redownload(budget, source=cut), "format")
    changed = source("changed.snapshot.jsonl", original.replace(b"Coffee Shop 7", b"Coffee Shop 8"))
    failed_check(redownload(budget, source=changed), "content_sha256")
    whole = source("whole.snapshot.jsonl", original)
    failed_check(redownload(budget, source=whole, sha256="0" * 64), "sha256")
    not_one = source("notes.txt", b'{"hello": "world"}\n')
    failed_check(redownload(budget, source=not_one), "format")
    # outside the tenant's folder: another tenant's, a path climbing out, a symlink out
    others = create(budget, tenant=OTHER)
    failed_check(redownload(budget, source=others["result"]["path"]), "location")
    failed_check(redownload(budget, source=f"{folder}/../{OTHER}/x.snapshot.jsonl"), "location")
    outside = tmp_path / "outside.snapshot.jsonl"
    outside.write_bytes(original)
    (folder / "link.snapshot.jsonl").symlink_to(outside)
    failed_check(redownload(budget, source=str(folder / "link.snapshot.jsonl")), "location")
    # another budget's snapshot, another tenant's job
    failed_check(redownload(domain.unique("elsewhere"), source=whole), "budget_id")
    foreign = redownload(budget, snapshot_job=others["id"])
    assert foreign["status"] == "failed"
    assert foreign["failure_reason"].startswith("field 'snapshot_job': no snapshot_create job")

    assert budgets.rows_of(TENANT, budget) == before
    assert redownload(budget, source=whole, sha256=created["result"]["sha256"])["status"] == (
        "succeeded"
    )


def hand_made(budget: str, memo_of: dict[int, str], count: int = 2500) -> Path:
    """A well-formed snapshot of ``count`` transactions (``memo_of``: number -> memo)."""
    copy = SNAPSHOTS / TENANT / f"{budget}-{uuid.uuid4().hex[:6]}.snapshot.jsonl"
    copy.parent.mkdir(parents=True, exist_ok=True)
    header = Header(
        snapshot="jobledger.budget",
        version=1,
        tenant=TENANT,
        budget_id=budget,
        job_id="hand-made",
        created_at="2024-01-01T00:00:00+00:00",
    )
    with copy.open("wb") as handle:
        writer = SnapshotWriter(handle, header)
        for number in range(count):
            writer.write(
                TransactionRecord(
                    external_id=f"r{number}",
                    booked_on="2024-01-01",  # type: ignore[arg-type]
                    payee="Shop",
                    payee_normalized="shop",
                    amount="1.00",  # type: ignore[arg-type]
                    memo=memo_of.get(number),
                )
            )
        writer.finish()
    return copy


def test_a_restore_the_database_refuses_midway_is_rolled_back_whole() -> None:
    budget = domain.unique("rollback")
    seeded(budget)
    before = budgets.rows_of(TENANT, budget)
    # The database refuses one row of the third insert batch: a constraint the test adds
    # for new rows only (NOT VALID) and drops afterwards.
    domain.execute(
        "ALTER TABLE transactions ADD CONSTRAINT test_refuse_memo "
        "CHECK (memo IS DISTINCT FROM 'refused') NOT VALID"
    )
    try:
        done = redownload(budget, source=str(hand_made(budget, {2400: "refused"})))
    finally:
        domain.execute("ALTER TABLE transactions DROP CONSTRAINT test_refuse_memo")

    assert done["status"] == "failed"
    assert done["failure_reason"].startswith(
        "the restore was rolled back, the budget is as it was"
    ), done["failure_reason"]
    assert "test_refuse_memo" in done["failure_reason"]
    assert budgets.rows_of(TENANT, budget) == before


def test_a_text_the_database_cannot_hold_fails_the_format_check() -> None:
    budget = domain.unique("nul")
    seeded(budget)
    before = budgets.rows_of(TENANT, budget)

    done = redownload(budget, source=str(hand_made(budget, {3: "a\u0000b"}, count=5)))

    failed_check(done, "format")
    assert "line 5" in done["failure_reason"]
    assert budgets.rows_of(TENANT, budget) == before


def test_redownload_canceled_while_fetching_leaves_the_budget() -> None:
    budget = domain.unique("slowfetch")
    seeded(budget)
    body = Path(create(budget)["result"]["path"]).read_bytes()
    domain.execute(
        "DELETE FROM suggestions WHERE tenant = :t AND budget_id = :b", t=TENANT, b=budget
    )
    before = budgets.rows_of(TENANT, budget)
    slow = domain.Release([body[:100], body[100:]])
    with domain.http_server({"/s.snapshot.jsonl": slow}) as base:
        job_id = snapshot_redownload.apply_async(
            args=(budget,), kwargs={"source": f"{base}/s.snapshot.jsonl"}, tenant=TENANT
        ).id
        domain.wait_until(
            lambda: any(line.startswith("fetching") for line in domain.logs(job_id)), "fetching"
        )
        assert request_cancel(uuid.UUID(job_id), actor="api", reason="stop") == "requested"
        slow.next_part()
        done = finished(job_id)

    assert done["status"] == "canceled"
    assert budgets.rows_of(TENANT, budget) == before


def test_redownload_refuses_bad_payloads_naming_the_field() -> None:
    budget = domain.unique("payload")
    cases = [
        ({}, "source"),
        ({"snapshot_job": str(uuid.uuid4()), "source": "a.snapshot.jsonl"}, "source"),
        ({"source": "ftp://host/x"}, "source"),
        ({"source": "a.snapshot.jsonl", "sha256": "xyz"}, "sha256"),
        ({"snapshot_job": "not-a-uuid"}, "snapshot_job"),
        ({"source": "a.snapshot.jsonl", "restore": "maybe"}, "restore"),
        ({"source": "a.snapshot.jsonl", "overwrite": True}, "overwrite"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidPayload) as refused:
            snapshot_redownload.delay(budget, **kwargs)
        assert field in refused.value.fields, (kwargs, refused.value.fields)
    assert domain.query("SELECT id FROM jobs") == []


def test_a_snapshot_larger_than_the_limit_fails_the_size_check_unread(
    worker_logs: Path,
) -> None:
    """JOBLEDGER_SNAPSHOT_MAX_BYTES bounds what a worker reads (and holds for a restore):
    a larger file fails the ``size`` check, the budget as it was."""
    budget = domain.unique("bounded")
    seeded(budget)
    created = create(budget)
    before = budgets.rows_of(TENANT, budget)
    queue = domain.unique("snapshots-small")
    small = start_worker(
        worker_logs,
        concurrency=1,
        queue=queue,
        env={**os.environ, "JOBLEDGER_SNAPSHOT_MAX_BYTES": "1024"},
    )
    try:
        padded = SNAPSHOTS / TENANT / "padded.snapshot.jsonl"
        padded.write_bytes(Path(created["result"]["path"]).read_bytes() + b" " * 4096)
        done = finished(
            snapshot_redownload.apply_async(
                args=(budget,), kwargs={"source": str(padded)}, tenant=TENANT, queue=queue
            ).id
        )
    finally:
        small.stop()
    failed_check(done, "size")
    assert "JOBLEDGER_SNAPSHOT_MAX_BYTES (1024 bytes)" in done["failure_reason"]
    assert done["queue"] == queue
    assert budgets.rows_of(TENANT, budget) == before
