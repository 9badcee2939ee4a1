"""Input limits of record files, so that a small file cannot ask a worker for unbounded
CPU or memory (a 100k-column CSV, a 1.5 KB XLSX claiming a million rows of 16k
columns, a few kilobytes of XLSX that decompress to gigabytes).

Usage::

    limits = Limits.from_settings()
    if len(header) > limits.columns:
        raise limits.exceeded("columns", f"the CSV header has {len(header)} columns")

Each limit is a setting (``JOBLEDGER_IMPORT_MAX_COLUMNS``, ``…_MAX_CELLS``,
``…_MAX_ROW_BYTES``, ``…_MAX_DECOMPRESSED_BYTES``); the readers in
:mod:`tasks._sources` and :mod:`tasks._xlsx` check each one before the work it bounds
(a header's width, a sheet's declared dimension, an archive's declared sizes) and again
while reading, since a file's declarations can lie. Going over one fails the job (or,
for one JSON line, makes that line an item error) with a message that names the limit
and the setting that raises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.config import settings
from tasks._settings import RecordLimits

Limit = Literal["columns", "cells", "row_bytes", "decompressed_bytes"]
#: Each limit's setting and unit, for messages.
SETTINGS: dict[Limit, tuple[str, str]] = {
    "columns": ("JOBLEDGER_IMPORT_MAX_COLUMNS", "columns"),
    "cells": ("JOBLEDGER_IMPORT_MAX_CELLS", "cells"),
    "row_bytes": ("JOBLEDGER_IMPORT_MAX_ROW_BYTES", "bytes"),
    "decompressed_bytes": ("JOBLEDGER_IMPORT_MAX_DECOMPRESSED_BYTES", "bytes"),
}


class LimitExceeded(Exception):
    """A record file goes over an input limit; ``str()`` is a user-safe reason that
    names the limit and how to raise it."""


@dataclass(frozen=True)
class Limits:
    """The input limits a reader enforces (see the module docstring)."""

    columns: int
    cells: int
    row_bytes: int
    decompressed_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        current = settings.of(RecordLimits)
        return cls(
            columns=current.import_max_columns,
            cells=current.import_max_cells,
            row_bytes=current.import_max_row_bytes,
            decompressed_bytes=current.import_max_decompressed_bytes,
        )

    def message(self, limit: Limit, what: str) -> str:
        """``what`` (e.g. "the CSV header has 100000 columns"), then the limit and how
        to raise it."""
        setting, unit = SETTINGS[limit]
        return (
            f"{what}: over the limit of {getattr(self, limit):,} {unit} "
            f"({setting}; raise it to read such a file)"
        )

    def exceeded(self, limit: Limit, what: str) -> LimitExceeded:
        """The error to raise when ``what`` goes over ``limit``."""
        return LimitExceeded(self.message(limit, what))
