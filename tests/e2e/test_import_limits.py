"""CPU and memory bombs, end to end: each is refused before the work
it would cost, naming the limit and the setting that raises it; and a long read reaches
a checkpoint often enough that its heartbeat moves and a cancel stops it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.ledger.transitions import request_cancel
from tasks import import_data
from tasks.import_data import fits
from tests.support import bombs, domain
from tests.support.ledger import job as ledger_job
from tests.support.ledger import wait_for_status
from tests.support.processes import WorkerProcess, start_worker


def failure_of(path: Path, **payload: object) -> str:
    job_id = import_data.delay(str(path), domain.unique("bomb"), **payload).id
    job = wait_for_status(job_id, "failed", "succeeded", "partial", "canceled", timeout=60)
    assert job["status"] == "failed", job
    return str(job["failure_reason"])


@pytest.mark.usefixtures("worker")
def test_a_csv_header_of_100k_columns_is_refused_before_any_row(tmp_path: Path) -> None:
    """It held a worker for minutes (a quadratic duplicate check) and ignored a cancel."""
    reason = failure_of(bombs.wide_csv(tmp_path / "wide.csv", 100_000))

    assert "the CSV header has 100,000 columns" in reason
    assert "over the limit of 1,000 columns (JOBLEDGER_IMPORT_MAX_COLUMNS" in reason


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        ("A1:XFD1048576", "declares 16,384 columns: over the limit of 1,000 columns"),
        ("A1:J1048576", "declares 1,048,576 rows of 10 columns: over the limit of 10,000,000"),
    ],
)
def test_a_tiny_xlsx_claiming_a_huge_sheet_is_refused_before_any_row(
    tmp_path: Path, dimension: str, expected: str
) -> None:
    path = bombs.with_dimension(tmp_path / "claims.xlsx", dimension)
    assert path.stat().st_size < 10_000

    reason = failure_of(path)

    assert expected in reason
    assert "JOBLEDGER_IMPORT_MAX_" in reason


@pytest.mark.usefixtures("worker")
def test_an_xlsx_decompressing_past_the_limit_is_refused_before_decompressing(
    tmp_path: Path,
) -> None:
    """4 million shared strings: about 70 MB of XML in a file of a few hundred kB, which
    openpyxl alone would hold in memory whole (about 9 bytes for each byte of XML)."""
    path = bombs.big_shared_strings(tmp_path / "strings.xlsx", 4_000_000)
    assert path.stat().st_size < 1_000_000

    reason = failure_of(path)

    assert "the XLSX file decompresses to 72," in reason
    assert "(JOBLEDGER_IMPORT_MAX_DECOMPRESSED_BYTES; raise it" in reason


@pytest.mark.usefixtures("worker")
def test_an_xlsx_part_holding_more_than_it_declares_is_not_read_past_its_declaration(
    tmp_path: Path,
) -> None:
    """Declarations can lie: zipfile stops a part at its declared size and fails its
    checksum, so the lie costs nothing and the file is refused."""
    path = bombs.big_shared_strings(tmp_path / "lies.xlsx", 4_000_000)
    bombs.lying_sizes(path, bombs.SHARED, declared=1_000)

    reason = failure_of(path)

    assert reason.startswith("bad format: not an XLSX workbook")


@pytest.mark.usefixtures("worker")
def test_a_csv_row_longer_than_the_limit_fails_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text('id,note\n1,short\n2,"' + "x" * (1024 * 1024) + '"\n3,short\n')

    reason = failure_of(path)

    assert "row 3 of the CSV file is longer than that" in reason
    assert "over the limit of 1,048,576 bytes (JOBLEDGER_IMPORT_MAX_ROW_BYTES" in reason


@pytest.mark.usefixtures("worker")
def test_json_lines_too_long_or_too_wide_are_item_errors(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    wide = {f"c{i}": i for i in range(1_001)}
    with path.open("w") as out:
        out.write(json.dumps({"id": 1}) + "\n")
        out.write(json.dumps({"id": 2, "note": "x" * (1024 * 1024)}) + "\n")
        out.write(json.dumps(wide) + "\n")
        out.write(json.dumps({"id": 4}) + "\n")
    dataset = domain.unique("lines")

    job_id = import_data.delay(str(path), dataset).id

    job = wait_for_status(job_id, "partial", "failed", "succeeded", timeout=60)
    assert job["status"] == "partial"
    problems = {error["row"]: error["message"] for error in job["errors"]}
    assert "is longer than 1,048,576 bytes" in problems[2]
    assert "JOBLEDGER_IMPORT_MAX_ROW_BYTES" in problems[2]
    assert "JOBLEDGER_IMPORT_MAX_COLUMNS" in problems[3]
    assert [row["id"] for row in domain.dataset_rows(dataset)] == [1, 4]


@pytest.fixture
def generous_worker(
    worker_logs: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[WorkerProcess, str]]:
    """A worker of its own queue whose cell limit lets a sheet of a billion empty rows
    through: without checkpoints inside the read, nothing would stop it for hours."""
    queue = f"generous-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JOBLEDGER_IMPORT_MAX_CELLS", str(2_000_000_000))
    process = start_worker(worker_logs, concurrency=1, queue=queue)
    yield process, queue
    process.stop()


def heartbeats_while_running(job_id: str, count: int) -> list[object]:
    """The job's first ``count`` distinct heartbeats, all seen while it runs."""
    seen = [wait_for_status(job_id, "running", timeout=60)["heartbeat_at"]]

    def moved() -> bool:
        row = ledger_job(job_id)
        assert row is not None
        assert row["status"] == "running", row
        if row["heartbeat_at"] != seen[-1]:
            seen.append(row["heartbeat_at"])
        return len(seen) >= count

    domain.wait_until(moved, f"{count - 1} heartbeats of job {job_id}", timeout=60)
    return seen


def test_a_cancel_stops_a_long_read_and_its_heartbeat_moves_meanwhile(
    tmp_path: Path, generous_worker: tuple[WorkerProcess, str]
) -> None:
    """A 5 kB XLSX whose one value sits in row 1,000,000,000: every empty row between
    is read. Before, the read had no checkpoint at all (minutes without a heartbeat)."""
    _, queue = generous_worker
    path = bombs.far_row(tmp_path / "far.xlsx", 1_000_000_000)
    job_id = import_data.apply_async(
        kwargs={"source": str(path), "dataset": domain.unique("far")}, queue=queue
    ).id

    beats = heartbeats_while_running(job_id, 3)
    assert beats == sorted(beats)  # type: ignore[type-var]
    assert request_cancel(uuid.UUID(job_id), actor="api", reason="test cancel") == "requested"

    job = wait_for_status(job_id, "canceled", "failed", "succeeded", "partial", timeout=60)
    assert job["status"] == "canceled"
    assert job["failure_reason"] == "test cancel"


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_wide_import_commits_batches_within_the_cell_bound(tmp_path: Path, fmt: str) -> None:
    """``batch_size=50000`` of 1,000 columns asked for 50 million values in one batch (a
    79 MB CSV took the worker to 982 MB and a cancel waited 12 s for the write). The
    worker's ``JOBLEDGER_IMPORT_MAX_BATCH_CELLS`` (200,000) cuts it at 200 rows."""
    header = [f"c{i}" for i in range(1_000)]
    rows = [[row * 1_000 + i for i in range(1_000)] for row in range(450)]
    path = tmp_path / f"wide.{fmt}"
    if fmt == "csv":
        domain.write_csv(path, header, rows)
    else:
        lines = (json.dumps(dict(zip(header, row, strict=True))) for row in rows)
        path.write_text("\n".join(lines) + "\n")
    dataset = domain.unique("wide")

    job_id = import_data.delay(str(path), dataset, batch_size=50_000).id

    job = wait_for_status(job_id, "succeeded", "partial", "failed", timeout=120)
    assert job["status"] == "succeeded", job
    batches = [line for line in domain.logs(job_id) if line.startswith("batch ")]
    assert [line.split(": ")[1].split(" ")[0] for line in batches] == ["200", "200", "50"]
    assert job["metadata"]["rows_committed"] == 450
    assert domain.count_rows(dataset) == 450


@pytest.mark.parametrize(
    ("width", "batch_size", "max_cells", "rows_per_batch"),
    [
        (1_000, 50_000, 200_000, 200),  # the cell bound decides
        (4, 1_000, 200_000, 1_000),  # narrow rows: batch_size decides
        (3, 50_000, 10, 3),  # max_cells // width, rounded down
        (500_000, 50_000, 200_000, 1),  # a row wider than the bound goes alone
    ],
)
def test_a_batch_holds_min_of_batch_size_and_cells_over_columns_rows(
    width: int, batch_size: int, max_cells: int, rows_per_batch: int
) -> None:
    rows = cells = 0
    while fits(rows, cells, width, batch_size, max_cells):
        rows, cells = rows + 1, cells + width
        assert rows <= batch_size + 1  # always ends
    assert rows == rows_per_batch


def test_a_batch_of_varying_widths_never_holds_more_values_than_the_bound() -> None:
    widths = [1, 7, 2, 9, 9, 1, 4]
    assert fits(2, 8, 2, 100, 10)
    assert not fits(3, 10, 1, 100, 10)
    batches: list[int] = []
    cells = rows = 0
    for width in widths:
        if not fits(rows, cells, width, 100, 10):
            batches.append(cells)
            rows = cells = 0
        rows, cells = rows + 1, cells + width
    batches.append(cells)
    assert batches == [10, 9, 10, 4]
