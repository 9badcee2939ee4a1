"""Column names PostgreSQL cannot store (a NUL, an unpaired surrogate) make item errors
of their rows, or a failure that names the problem; never a job whose outcome cannot be
recorded. A real worker, Redis and PostgreSQL; checked through the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import import_data
from tests.support import domain
from tests.support.ledger import wait_for_status

pytestmark = pytest.mark.usefixtures("worker")

FINAL = ("succeeded", "partial", "failed", "canceled")


def test_a_json_line_with_a_nul_or_surrogate_key_is_an_item_error(tmp_path: Path) -> None:
    source = tmp_path / "keys.jsonl"
    source.write_text('{"a":1}\n{"a\\u0000":1}\n{"\\ud800":1}\n{"a":2}\n')
    dataset = domain.unique("keys")

    job = wait_for_status(import_data.delay(str(source), dataset).id, *FINAL)

    assert job["status"] == "partial", job["failure_reason"]
    assert job["result"]["records_imported"] == 2
    errors = sorted(job["errors"], key=lambda e: e["row"])
    assert [(e["row"], e["field"]) for e in errors] == [(2, "a\ufffd"), (3, "\ufffd")]
    assert "NUL" in errors[0]["message"]
    assert "surrogate" in errors[1]["message"]
    assert [row["a"] for row in domain.dataset_rows(dataset)] == [1, 2]


def test_a_csv_header_with_a_nul_fails_the_job_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "nulhdr.csv"
    source.write_bytes(b"a,b\x00c\n1,2\n")

    job = wait_for_status(import_data.delay(str(source), domain.unique("nulhdr")).id, *FINAL)

    assert job["status"] == "failed"
    assert "all 1 rows failed" in job["failure_reason"]
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(2, "b\ufffdc")]
    assert "NUL" in job["errors"][0]["message"]
