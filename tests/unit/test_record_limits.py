"""Reading record files within the input limits, without services: CSV rows counted
across the lines they span, JSON lines skipped when too long or too wide, and the
checkpoint called for every row, skipped ones too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks._limits import Limits
from tasks._sources import (
    Format,
    HashingReader,
    OpenedSource,
    RecordStream,
    SourceUnreadable,
)
from tests.support import bombs

LIMITS = Limits(columns=3, cells=100, row_bytes=1024, decompressed_bytes=10_000)


def stream(body: bytes, format: Format, ticks: list[int] | None = None) -> RecordStream:
    chunks = iter([body[i : i + 100] for i in range(0, len(body), 100)])
    source = OpenedSource(uri="memory:", expected_size=len(body), stream=HashingReader(chunks))
    tick = (lambda: ticks.append(1)) if ticks is not None else (lambda: None)
    return RecordStream(source, format, limits=LIMITS, tick=tick)


def test_csv_with_a_bom_crlf_and_a_quoted_newline_reads_as_before() -> None:
    body = '\ufeffid,note\r\n1,"two\r\nlines"\r\n2,plain\r\n'.encode()

    records = [(r.row, r.values) for r in stream(body, "csv")]

    assert records == [(2, {"id": "1", "note": "two\r\nlines"}), (3, {"id": "2", "note": "plain"})]


def test_a_csv_row_is_measured_across_the_lines_it_spans() -> None:
    lines = "\n".join("y" * 400 for _ in range(3))  # 1,202 bytes in one quoted field
    body = f'id,note\n1,short\n2,"{lines}"\n'.encode()

    with pytest.raises(SourceUnreadable, match="row 3 of the CSV file is longer"):
        list(stream(body, "csv"))


def test_a_csv_header_wider_than_the_limit_is_refused_naming_the_setting() -> None:
    with pytest.raises(SourceUnreadable, match="JOBLEDGER_IMPORT_MAX_COLUMNS"):
        list(stream(b"a,b,c,d\n1,2,3,4\n", "csv"))


def test_json_lines_too_long_or_too_wide_are_problems_and_reading_goes_on() -> None:
    body = b"\n".join(
        [
            b'{"a": 1}',
            b'{"a": "' + b"z" * 2000 + b'"}',
            b'{"b": 1, "c": 2}',
            b'{"d": 1}',  # a 4th column for the file
            b"NaN-not-json",
            b"[" * 1_000,
            b'{"a": 5}',
        ]
    )

    records = list(stream(body, "jsonl"))

    assert [(r.row, r.values) for r in records if r.values] == [
        (1, {"a": 1}),
        (3, {"b": 1, "c": 2}),
        (7, {"a": 5}),
    ]
    problems = {r.row: r.problem or "" for r in records if r.problem}
    assert "JOBLEDGER_IMPORT_MAX_ROW_BYTES" in problems[2]
    assert "brings the file's columns to 4" in problems[4]
    assert problems[5] == "is not valid JSON (Extra data: line 1 column 4 (char 3))"
    assert problems[6] == "is not valid JSON (nested too deeply)"


def test_the_checkpoint_is_called_for_skipped_rows_too() -> None:
    ticks: list[int] = []

    records = list(stream(b"id\n" + b"\n" * 50 + b"1\n", "csv", ticks))

    assert [r.values for r in records] == [{"id": "1"}]
    assert len(ticks) >= 52


def test_an_xlsx_larger_than_the_decompressed_limit_is_refused_as_it_downloads(
    tmp_path: Path,
) -> None:
    body = bombs.with_dimension(tmp_path / "ok.xlsx", "A1:B2").read_bytes()
    ticks: list[int] = []
    small = Limits(columns=3, cells=100, row_bytes=1024, decompressed_bytes=len(body) // 2)
    records = stream(body, "xlsx", ticks)
    records.limits = small

    with pytest.raises(SourceUnreadable, match="JOBLEDGER_IMPORT_MAX_DECOMPRESSED_BYTES"):
        list(records)
    assert ticks  # the download itself reaches checkpoints
