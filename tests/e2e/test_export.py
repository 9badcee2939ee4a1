"""``export`` end to end: a real worker, Redis and PostgreSQL; the file against SQL."""

from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from openpyxl import load_workbook

from tasks import export_data, import_data
from tests.support import domain
from tests.support.jobs import echo
from tests.support.ledger import wait_for_status

# Set before the session worker starts (at collection), which inherits it; removed when
# the test process exits (after the session worker has stopped).
if "JOBLEDGER_EXPORT_DIR" not in os.environ:
    os.environ["JOBLEDGER_EXPORT_DIR"] = tempfile.mkdtemp(prefix="jobledger-exports-")
    atexit.register(shutil.rmtree, os.environ["JOBLEDGER_EXPORT_DIR"], ignore_errors=True)
EXPORT_DIR = Path(os.environ["JOBLEDGER_EXPORT_DIR"])

pytestmark = pytest.mark.usefixtures("worker")


def imported(tmp_path: Path, rows: int = 3_000) -> str:
    """A dataset of ``rows`` rows with typed and untyped columns (and an empty value)."""
    source = domain.write_csv(
        tmp_path / "orders.csv",
        ["order", "amount", "city", "note"],
        [
            [str(i), f"{i}.25", f"Zürich {i % 7}", "" if i % 3 else 'a, "quoted"']
            for i in range(rows)
        ],
    )
    dataset = domain.unique("orders")
    job_id = import_data.delay(
        str(source), dataset, columns={"order": "int", "amount": "decimal", "note": "str?"}
    ).id
    assert wait_for_status(job_id, "succeeded", "failed", "partial")["status"] == "succeeded"
    return dataset


def exported_path(job: dict[str, Any]) -> Path:
    url = job["result_url"]
    assert url.startswith("file://")
    return Path(unquote(urlsplit(url).path))


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def test_csv_export_rows_equal_the_dataset_and_result_url_points_to_it(tmp_path: Path) -> None:
    dataset = imported(tmp_path)

    job_id = export_data.delay(dataset).id

    job = wait_for_status(job_id, "succeeded", "failed", "partial")
    assert job["status"] == "succeeded", job["failure_reason"]
    path = exported_path(job)
    assert path.is_file()
    assert path.parent == (EXPORT_DIR / "default").resolve()
    with path.open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    expected = domain.dataset_rows(dataset)
    assert len(exported) == len(expected) == 3_000
    assert exported == [{k: as_text(v) for k, v in row.items()} for row in expected]
    (recorded,) = domain.files(job_id)
    assert recorded["direction"] == "out"
    assert recorded["uri"] == job["result_url"]
    assert recorded["records"] == 3_000
    assert recorded["bytes"] == path.stat().st_size
    assert recorded["sha256"] == domain.sha256_of(path)
    assert job["result"]["records"] == 3_000
    assert not list(path.parent.glob("*.part"))


def test_json_lines_export_keeps_values_as_stored(tmp_path: Path) -> None:
    dataset = imported(tmp_path, rows=500)

    job = wait_for_status(export_data.delay(dataset, format="jsonl").id, "succeeded", "failed")

    lines = exported_path(job).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == domain.dataset_rows(dataset)


def test_xlsx_export_rows_equal_the_dataset(tmp_path: Path) -> None:
    dataset = imported(tmp_path, rows=500)

    job = wait_for_status(export_data.delay(dataset, "xlsx").id, "succeeded", "failed")

    assert job["status"] == "succeeded", job["failure_reason"]
    workbook = load_workbook(exported_path(job), read_only=True)
    header, *rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    # XLSX keeps no empty cells: a row whose last values are empty comes back shorter.
    padded = [list(row) + [None] * (len(header) - len(row)) for row in rows]
    assert [dict(zip(header, row, strict=True)) for row in padded] == domain.dataset_rows(dataset)


def test_ledger_relation_export_is_scoped_to_the_tenant() -> None:
    mine = echo.delay(value=1).id
    theirs = echo.delay(value=2, tenant="other").id
    for job_id in (mine, theirs):
        wait_for_status(job_id, "succeeded")

    job_id = export_data.delay("ledger:jobs").id

    job = wait_for_status(job_id, "succeeded", "failed")
    assert job["status"] == "succeeded", job["failure_reason"]
    with exported_path(job).open(newline="", encoding="utf-8") as handle:
        ids = {row["id"] for row in csv.DictReader(handle)}
    # The export job itself was running, and is in the ledger, while it read the table.
    assert ids == {str(mine), str(job_id)}
    assert exported_path(job).name.startswith("ledger.jobs-")


def test_unknown_dataset_fails_with_a_reason() -> None:
    job = wait_for_status(export_data.delay(domain.unique("nothing")).id, "failed", "succeeded")

    assert job["status"] == "failed"
    assert "no dataset" in job["failure_reason"]


def test_unknown_ledger_relation_fails_with_a_reason() -> None:
    job = wait_for_status(export_data.delay("ledger:no_such_view").id, "failed", "succeeded")

    assert job["status"] == "failed"
    assert "no table or view 'no_such_view'" in job["failure_reason"]


def test_a_ledger_relation_without_tenant_column_is_limited_through_its_jobs() -> None:
    mine = echo.delay(value=1).id
    theirs = echo.delay(value=2, tenant="other").id
    for job_id in (mine, theirs):
        wait_for_status(job_id, "succeeded")

    job = wait_for_status(export_data.delay("ledger:job_events").id, "succeeded", "failed")

    assert job["status"] == "succeeded", job["failure_reason"]
    with exported_path(job).open(newline="", encoding="utf-8") as handle:
        job_ids = {row["job_id"] for row in csv.DictReader(handle)}
    assert job_ids == {str(mine), str(job["id"])}
