"""The snapshot format (tasks/_snapshots.py): what the writer writes reads back, and
each way a file can be wrong fails the check that names it (no database, no worker)."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
from datetime import date
from decimal import Decimal

import pytest

from tasks._snapshots import (
    CHECKS,
    CategoryRecord,
    Header,
    SnapshotCheckFailed,
    SnapshotWriter,
    SuggestionRecord,
    TransactionRecord,
    read_snapshot,
    snapshot_records,
)

HEADER = Header(
    snapshot="jobledger.budget",
    version=1,
    tenant="acme",
    budget_id="household",
    job_id="j1",
    created_at="2024-01-01T00:00:00+00:00",
)


def transaction(external_id: str, category: str | None = None) -> TransactionRecord:
    return TransactionRecord(
        external_id=external_id,
        booked_on=date(2024, 1, 2),
        payee="Café Olé",
        payee_normalized="café olé",
        amount=Decimal("-3.50"),
        category=category,
    )


def snapshot(*records: object, header: Header = HEADER) -> bytes:
    out = io.BytesIO()
    writer = SnapshotWriter(out, header)
    for record in records:
        writer.write(record)  # type: ignore[arg-type]
    writer.finish()
    return out.getvalue()


GOOD = (
    CategoryRecord(name="Coffee", transactions=1),
    transaction("t1", "Coffee"),
    transaction("t2"),
    SuggestionRecord(
        transaction="t2", category="Coffee", confidence=1.0, evidence=1, status="pending"
    ),
)


def read(body: bytes, **expect: object) -> object:
    options = {"expect_tenant": "acme", "expect_budget": "household", **expect}
    return read_snapshot(io.BytesIO(body), **options)  # type: ignore[arg-type]


def check_of(body: bytes, **expect: object) -> str:
    with pytest.raises(SnapshotCheckFailed) as failed:
        read(body, **expect)
    assert str(failed.value).startswith(f"snapshot check {failed.value.check!r} failed: ")
    return failed.value.check


def resealed(lines: list[bytes]) -> bytes:
    """Lines with a fresh, correct trailer (counts as the lines say): a file that passes
    the checksum and count checks, to reach the checks after them."""
    counts = {"categories": 0, "transactions": 0, "suggestions": 0}
    keys = {"category": "categories", "transaction": "transactions", "suggestion": "suggestions"}
    for line in lines[1:]:
        counts[keys[json.loads(line)["type"]]] += 1
    digest = hashlib.sha256(b"".join(lines)).hexdigest()
    trailer = json.dumps({"end": True, "records": counts, "sha256": digest}).encode() + b"\n"
    return b"".join(lines) + trailer


def test_what_is_written_reads_back_the_same() -> None:
    contents = read(snapshot(*GOOD), expect_records=4)

    assert contents.categories == [GOOD[0]]  # type: ignore[attr-defined]
    assert contents.transactions == [GOOD[1], GOOD[2]]  # type: ignore[attr-defined]
    assert contents.suggestions == [GOOD[3]]  # type: ignore[attr-defined]
    assert contents.records == 4  # type: ignore[attr-defined]


def test_the_trailer_holds_the_counts_and_the_checksum_of_the_lines_before_it() -> None:
    body = snapshot(*GOOD)
    *lines, last = body.splitlines(keepends=True)
    trailer = json.loads(last)

    assert trailer["records"] == {"categories": 1, "transactions": 2, "suggestions": 1}
    assert trailer["sha256"] == hashlib.sha256(b"".join(lines)).hexdigest()
    assert "Café Olé".encode() in body  # UTF-8, not escaped


def test_records_out_of_order_are_refused_by_the_writer() -> None:
    writer = SnapshotWriter(io.BytesIO(), HEADER)
    writer.write(transaction("t1"))
    with pytest.raises(ValueError, match="a category record after the transactions"):
        writer.write(CategoryRecord(name="Coffee", transactions=1))


def test_each_kind_of_damage_fails_the_check_that_names_it() -> None:
    body = snapshot(*GOOD)
    lines = body.splitlines(keepends=True)

    assert check_of(b"") == "format"
    assert check_of(b"not json\n") == "format"
    assert check_of(body.replace(b'"version":1', b'"version":2')) == "format"
    assert check_of(b"".join(lines[:-1])) == "format"  # no trailer: cut short
    assert check_of(body[:-1]) == "format"  # the last line cut
    assert check_of(body + lines[1]) == "format"  # a line after the trailer
    assert check_of(body.replace(b"-3.50", b"-3.50", 1).replace(b'"Coffee"', b'"Tea"', 1)) == (
        "content_sha256"
    )
    assert check_of(resealed([lines[0], lines[2], lines[1]])) == "format"  # order
    assert check_of(resealed([*lines[:3], lines[2], *lines[3:5]])) == "references"  # t1 twice
    assert check_of(resealed([lines[0], lines[1], lines[3], lines[4]])) == "references"  # count
    assert check_of(resealed([*lines[:3], lines[4]])) == "references"  # suggestion of t2 gone
    nul = lines[3].replace(b'"Caf', b'"\\u0000Caf')
    assert check_of(resealed([*lines[:3], nul, lines[4]])) == "format"
    assert check_of(body, expect_records=5) == "records"
    assert check_of(body, expect_tenant="other") == "tenant"
    assert check_of(body, expect_budget="other") == "budget_id"


def test_a_trailer_whose_counts_disagree_fails_records() -> None:
    body = snapshot(*GOOD)
    *lines, last = body.splitlines(keepends=True)
    trailer = json.loads(last)
    trailer["records"]["suggestions"] = 2

    assert check_of(b"".join(lines) + json.dumps(trailer).encode() + b"\n") == "records"


def test_every_check_name_is_one_a_failure_can_give() -> None:
    assert CHECKS[:3] == ("location", "size", "sha256")
    with pytest.raises(AssertionError):
        SnapshotCheckFailed("no such check", "x")


def test_checking_a_snapshot_holds_its_references_not_its_records() -> None:
    """A restore checks the whole file before its transaction opens, then reads the
    records again into it: the check must not hold the records (they took about 8.5 times
    the file's size as models, so a 256 MiB snapshot would need gigabytes)."""
    memo = "m" * 1000
    records = [
        TransactionRecord(**{**transaction(f"t{i}").model_dump(), "memo": memo})
        for i in range(2000)
    ]
    body = snapshot(*records)
    tracemalloc.start()
    try:
        contents = read_snapshot(
            io.BytesIO(body), expect_tenant="acme", expect_budget="household", keep=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert contents.records == 2000
    assert contents.counts == {"categories": 0, "transactions": 2000, "suggestions": 0}
    assert peak < len(body) / 4, (peak, len(body))
    assert list(snapshot_records(io.BytesIO(body))) == records
    assert list(snapshot_records(io.BytesIO(snapshot(*GOOD)))) == list(GOOD)
