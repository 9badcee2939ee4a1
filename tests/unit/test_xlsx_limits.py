"""The XLSX reader's own parts, without services: shared strings read as openpyxl reads
them, and a workbook's declared size and dimension checked before any row."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl.reader.strings import read_string_table

from tasks._limits import LimitExceeded, Limits
from tasks._xlsx import first_sheet, open_workbook, read_shared_strings
from tests.support import bombs

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
SST = (
    f'<sst xmlns="{MAIN}" count="6" uniqueCount="6">'
    "<si><t>plain</t></si>"
    '<si><t xml:space="preserve">  spaced  </t></si>'
    "<si><r><rPr><b/></rPr><t>bold</t></r><r><t> and not</t></r></si>"
    '<si><t>kanji</t><rPh sb="0" eb="1"><t>phonetic, left out</t></rPh></si>'
    "<si><t>under_x005F_x000D_score</t></si>"
    "<si><t/></si>"
    "</sst>"
).encode()
LIMITS = Limits(columns=5, cells=100, row_bytes=1024, decompressed_bytes=100_000)


def test_shared_strings_are_read_as_openpyxl_reads_them() -> None:
    ticks: list[None] = []

    strings = read_shared_strings(io.BytesIO(SST), lambda: ticks.append(None))

    assert strings == list(read_string_table(io.BytesIO(SST)))
    assert strings[2] == "bold and not"
    assert len(ticks) == len(strings)


def test_a_workbook_declaring_more_than_the_limit_is_not_opened(tmp_path: Path) -> None:
    path = bombs.big_shared_strings(tmp_path / "big.xlsx", 10_000)

    with pytest.raises(LimitExceeded, match=r"to 196,983 bytes: over the limit of 100,000 bytes"):
        open_workbook(path, LIMITS, lambda: None)


@pytest.mark.parametrize(
    ("dimension", "limit"),
    [("A1:F2", "limit of 5 columns"), ("A1:E21", "declares 21 rows of 5 columns")],
)
def test_a_sheet_declaring_more_than_the_limits_is_refused(
    tmp_path: Path, dimension: str, limit: str
) -> None:
    workbook = open_workbook(bombs.with_dimension(tmp_path / "d.xlsx", dimension), LIMITS, print)

    with pytest.raises(LimitExceeded, match=limit):
        first_sheet(workbook, LIMITS)


def test_a_sheet_within_the_limits_is_read_as_it_is_not_as_it_claims(tmp_path: Path) -> None:
    path = bombs.with_dimension(tmp_path / "ok.xlsx", "A1:E20", rows=[["a", "b"], [1, 2]])
    sheet, rows = first_sheet(open_workbook(path, LIMITS, lambda: None), LIMITS)

    assert rows == 19  # declared data rows, for progress
    assert list(sheet.iter_rows(values_only=True)) == [("a", "b"), (1, 2)]  # not padded
