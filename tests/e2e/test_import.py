"""``import`` end to end: a real worker, Redis and PostgreSQL; checked with SQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from app.ledger.operations import actions as operations
from app.ledger.transitions import request_cancel
from tasks import import_data
from tests.support import domain
from tests.support.ledger import wait_for_status

pytestmark = pytest.mark.usefixtures("worker")

COLUMNS = {"id": "int", "amount": "decimal", "booked": "date", "note": "str?"}
#: Data row index (0-based) -> (field, bad value) for the 3 bad rows of the big CSV.
BAD = {17: ("amount", "twelve"), 5003: ("booked", "2024-13-45"), 9998: ("id", "x9998")}


def big_csv(path: Path, rows: int = 10_000) -> Path:
    data = []
    for index in range(rows):
        row = {"id": str(index), "amount": f"{index}.50", "booked": "2024-03-01", "note": ""}
        if index in BAD:
            column, value = BAD[index]
            row[column] = value
        data.append([row["id"], row["amount"], row["booked"], row["note"]])
    return domain.write_csv(path, ["id", "amount", "booked", "note"], data)


def test_csv_with_three_bad_rows_ends_partial_with_three_errors(tmp_path: Path) -> None:
    source = big_csv(tmp_path / "sales.csv")
    dataset = domain.unique("sales")

    job_id = import_data.delay(source=str(source), dataset=dataset, columns=COLUMNS).id

    job = wait_for_status(job_id, "partial", "failed", "succeeded", timeout=60)
    assert job["status"] == "partial"
    assert job["result"] == {
        "records_read": 10_000,
        "records_imported": 9_997,
        "records_failed": 3,
    }
    errors = sorted(job["errors"], key=lambda e: e["row"])
    assert [(e["row"], e["field"]) for e in errors] == [
        (index + 2, column) for index, (column, _) in sorted(BAD.items())
    ]
    assert all(e["message"] for e in errors)
    assert domain.count_rows(dataset) == 9_997
    (recorded,) = domain.files(job_id)
    assert recorded["direction"] == "in"
    assert recorded["bytes"] == source.stat().st_size
    assert recorded["sha256"] == domain.sha256_of(source)
    assert recorded["records"] == 10_000
    assert sum(line.startswith("batch ") for line in domain.logs(job_id)) == 10


def test_typed_columns_are_stored_parsed(tmp_path: Path) -> None:
    source = domain.write_csv(
        tmp_path / "typed.csv",
        ["id", "amount", "booked", "note"],
        [["1", "19.90", "2024-03-01", ""], ["2", "-3", "2024-02-29", "refund"]],
    )
    dataset = domain.unique("typed")

    job_id = import_data.delay(str(source), dataset, columns=COLUMNS).id

    assert wait_for_status(job_id, "succeeded", "failed", "partial")["status"] == "succeeded"
    assert domain.dataset_rows(dataset) == [
        {"id": 1, "amount": "19.90", "booked": "2024-03-01", "note": None},
        {"id": 2, "amount": "-3", "booked": "2024-02-29", "note": "refund"},
    ]


def test_missing_file_fails_saying_it_was_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"

    job_id = import_data.delay(str(missing), domain.unique("missing")).id

    job = wait_for_status(job_id, "failed", "succeeded", "partial")
    assert job["status"] == "failed"
    assert "not found" in job["failure_reason"]
    assert str(missing) in job["failure_reason"]


def test_xlsx_imports(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["sku", "qty", "price", "since"])
    sheet.append(["A-1", 3, 9.5, datetime(2024, 1, 31)])
    sheet.append(["B-2", 7, 12.25, datetime(2023, 12, 1)])
    sheet.append([None, None, None, None])  # a formatted blank row: skipped
    sheet.append(["C-3", 1, 0.99, datetime(2022, 6, 15)])
    path = tmp_path / "stock.xlsx"
    workbook.save(path)
    dataset = domain.unique("stock")

    job_id = import_data.delay(
        str(path), dataset, columns={"qty": "int", "price": "decimal", "since": "date"}
    ).id

    job = wait_for_status(job_id, "succeeded", "failed", "partial")
    assert job["status"] == "succeeded", job["failure_reason"]
    assert job["payload"]["format"] == "xlsx"
    assert domain.dataset_rows(dataset) == [
        {"sku": "A-1", "qty": 3, "price": "9.5", "since": "2024-01-31"},
        {"sku": "B-2", "qty": 7, "price": "12.25", "since": "2023-12-01"},
        {"sku": "C-3", "qty": 1, "price": "0.99", "since": "2022-06-15"},
    ]
    (recorded,) = domain.files(job_id)
    assert recorded["sha256"] == domain.sha256_of(path)
    assert recorded["records"] == 3


def test_json_lines_import_and_keyed_reimport_upserts(tmp_path: Path) -> None:
    first = tmp_path / "people.jsonl"
    first.write_text(
        "\n".join(json.dumps({"email": f"p{i}@x.org", "visits": i}) for i in range(5)) + "\n"
    )
    dataset = domain.unique("people")

    job_id = import_data.delay(str(first), dataset, key="email").id
    assert wait_for_status(job_id, "succeeded", "failed", "partial")["status"] == "succeeded"
    assert domain.count_rows(dataset) == 5

    second = tmp_path / "people-again.ndjson"
    second.write_text(
        json.dumps({"email": "p1@x.org", "visits": 100})
        + "\n"
        + json.dumps({"email": "new@x.org", "visits": 1})
        + "\n"
    )
    again = import_data.delay(str(second), dataset, key="email").id
    assert wait_for_status(again, "succeeded", "failed", "partial")["status"] == "succeeded"

    rows = {row["email"]: row["visits"] for row in domain.dataset_rows(dataset)}
    assert len(rows) == 6
    assert rows["p1@x.org"] == 100
    assert rows["new@x.org"] == 1


def test_every_row_bad_fails_the_job(tmp_path: Path) -> None:
    source = domain.write_csv(tmp_path / "bad.csv", ["id"], [["a"], ["b"], ["c"]])

    job_id = import_data.delay(str(source), domain.unique("bad"), columns={"id": "int"}).id

    job = wait_for_status(job_id, "failed", "succeeded", "partial")
    assert job["status"] == "failed"
    assert "all 3 rows failed" in job["failure_reason"]
    assert len(job["errors"]) == 3


def test_file_that_is_not_the_format_it_claims_fails(tmp_path: Path) -> None:
    fake = tmp_path / "report.xlsx"
    fake.write_text("id,amount\n1,2\n")

    job_id = import_data.delay(str(fake), domain.unique("fake")).id

    job = wait_for_status(job_id, "failed", "succeeded", "partial")
    assert job["status"] == "failed"
    assert "bad format" in job["failure_reason"]


def test_http_source_is_streamed_and_recorded_by_url() -> None:
    body = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(250))
    dataset = domain.unique("remote")
    with domain.http_server({"/export/items.csv": body}) as base:
        url = f"{base}/export/items.csv"

        job_id = import_data.delay(url, dataset, batch_size=100).id
        job = wait_for_status(job_id, "succeeded", "failed", "partial")

    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.count_rows(dataset) == 250
    (recorded,) = domain.files(job_id)
    assert recorded["uri"] == url
    assert recorded["bytes"] == len(body)


def test_xlsx_over_http_is_spooled_and_imported(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.append(["code", "qty"])
    for index in range(120):
        workbook.active.append([f"K{index}", index])
    path = tmp_path / "remote.xlsx"
    workbook.save(path)
    dataset = domain.unique("remote-xlsx")
    with domain.http_server({"/files/remote.xlsx": path.read_bytes()}) as base:
        job_id = import_data.delay(f"{base}/files/remote.xlsx", dataset, key="code").id
        job = wait_for_status(job_id, "succeeded", "failed", "partial")

    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.count_rows(dataset) == 120
    (recorded,) = domain.files(job_id)
    assert recorded["sha256"] == domain.sha256_of(path)


def test_http_404_fails_saying_not_found() -> None:
    with domain.http_server({}) as base:
        job_id = import_data.delay(f"{base}/gone.csv", domain.unique("gone")).id
        job = wait_for_status(job_id, "failed", "succeeded", "partial")

    assert job["status"] == "failed"
    assert "not found" in job["failure_reason"]


def cancel_after_three_batches(slow: domain.Release, url: str, dataset: str) -> str:
    """Start an import of ``url`` (batches of 100), cancel it once 3 batches are
    committed and the source is held back, then let the source go on."""
    job_id = import_data.delay(url, dataset, batch_size=100).id
    domain.wait_until(lambda: domain.count_rows(dataset) == 300, "3 batches committed")
    assert request_cancel(uuid.UUID(job_id), actor="api", reason="test cancel") == "requested"
    slow.next_part()
    return job_id


def slow_csv(rows: int = 1000) -> domain.Release:
    """A CSV whose first 300 rows come at once and the rest only when released."""
    lines = [f"{i},{i * i}\n".encode() for i in range(rows)]
    return domain.Release([b"id,value\n" + b"".join(lines[:300]), b"".join(lines[300:])])


def test_cancel_mid_way_keeps_the_committed_batches() -> None:
    """The cancel is requested while the import waits for the rest of the source: the 3
    committed batches stay, nothing after them is written."""
    slow = slow_csv()
    dataset = domain.unique("slow")
    with domain.http_server({"/slow.csv": slow}) as base:
        job_id = cancel_after_three_batches(slow, f"{base}/slow.csv", dataset)
        job = wait_for_status(job_id, "canceled", "succeeded", "failed", "partial")

    assert job["status"] == "canceled"
    assert domain.count_rows(dataset) == 300
    assert job["metadata"]["rows_committed"] == 300
    assert job["metadata"]["last_committed_row"] == 301  # header = row 1
    assert any("the 300 rows committed so far" in line for line in domain.logs(job_id))


def test_retry_of_a_canceled_unkeyed_import_starts_over_without_doubling() -> None:
    slow = slow_csv()
    dataset = domain.unique("retried")
    with domain.http_server({"/slow.csv": slow}) as base:
        job_id = cancel_after_three_batches(slow, f"{base}/slow.csv", dataset)
        wait_for_status(job_id, "canceled", "succeeded", "failed", "partial")

        operations.retry(job_id, actor="api")  # same job, same payload, again
        job = wait_for_status(job_id, "succeeded", "failed", "partial", "canceled")

    assert job["status"] == "succeeded", job["failure_reason"]
    assert domain.count_rows(dataset) == 1000
    assert sorted(int(row["id"]) for row in domain.dataset_rows(dataset)) == list(range(1000))


def test_json_line_with_a_value_postgresql_refuses_is_an_item_error(tmp_path: Path) -> None:
    """NaN, Infinity and a NUL character parse in Python but PostgreSQL's jsonb refuses
    them: each such line is an item error of its own, the other lines are imported."""
    source = tmp_path / "odd.jsonl"
    source.write_text(
        '{"id": 1, "score": 1.5}\n'
        '{"id": 2, "score": NaN}\n'
        '{"id": 3, "score": -Infinity}\n'
        '{"id": 4, "note": "nul \\u0000 inside"}\n'
        '{"id": 5, "score": 2}\n'
    )
    dataset = domain.unique("odd")

    job_id = import_data.delay(str(source), dataset).id

    job = wait_for_status(job_id, "partial", "failed", "succeeded")
    assert job["status"] == "partial", job["failure_reason"]
    assert sorted((e["row"], e["field"]) for e in job["errors"]) == [
        (2, "score"),
        (3, "score"),
        (4, "note"),
    ]
    assert job["result"]["records_imported"] == 2
    assert [row["id"] for row in domain.dataset_rows(dataset)] == [1, 5]


def test_an_import_failing_mid_way_records_exactly_which_rows_are_in(tmp_path: Path) -> None:
    """Batches committed before the failure stay; the job's metadata says how many rows
    and through which source row, and the failure reason says so too."""
    good = b"".join(f"{i},{i * 2}\n".encode() for i in range(5000))
    source = tmp_path / "broken.csv"
    source.write_bytes(b"id,value\n" + good + b"5000,\xff\xfe not UTF-8\n")
    dataset = domain.unique("broken")

    job_id = import_data.delay(str(source), dataset, batch_size=100).id

    job = wait_for_status(job_id, "failed", "succeeded", "partial")
    assert job["status"] == "failed"
    assert "not UTF-8" in job["failure_reason"]
    ids = sorted(int(row["id"]) for row in domain.dataset_rows(dataset))
    assert ids, "the file is read in chunks: some batches land before the bad bytes"
    assert ids == list(range(len(ids)))
    assert job["metadata"]["rows_committed"] == len(ids)
    assert job["metadata"]["last_committed_row"] == ids[-1] + 2  # header = row 1
    assert f"the {len(ids)} rows committed so far" in job["failure_reason"]
    assert f"up to row {ids[-1] + 2}" in job["failure_reason"]


def test_an_import_stopped_by_its_time_limit_says_which_rows_are_in() -> None:
    """The soft time limit stops the import while it waits for the rest of its source,
    after 3 batches: the job fails as timed out, and its metadata names the 300 rows
    that are in (each batch noted them in its own transaction)."""
    slow = slow_csv()
    dataset = domain.unique("timed-out")
    with domain.http_server({"/slow.csv": slow}) as base:
        job_id = import_data.apply_async(
            kwargs={"source": f"{base}/slow.csv", "dataset": dataset, "batch_size": 100},
            soft_time_limit=8,
            time_limit=60,
        ).id
        job = wait_for_status(job_id, "failed", "succeeded", "partial", "canceled", timeout=60)

    assert job["failure_reason"].startswith("timed out after 8 s (soft time limit")
    assert domain.count_rows(dataset) == 300
    assert job["metadata"]["rows_committed"] == 300
    assert job["metadata"]["last_committed_row"] == 301
    assert any("the 300 rows committed so far" in line for line in domain.logs(job_id))
