"""How the ``jobledger`` command prints tables: rich tables (typer brings ``rich``, so no
new dependency), a totals row where numbers add up, a caption saying what was left out.

Usage::

    from app.cli_tables import print_table

    print_table(rows, ("name", "status"), caption="page 1, 20 jobs of 57")
    print_table(rows, ("type", "queued", "failed"), totals={"type": "TOTAL", ...})

Printed to the standard output of the moment (a test's captured one too), as wide as the
terminal, or :data:`WIDE` when the output is not a terminal (a pipe, a file): a script
reading the output never gets a column cut to fit 80 characters.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

#: Width of the output when it is not a terminal.
WIDE = 250


def console() -> Console:
    """A console on the current standard output."""
    terminal = sys.stdout.isatty()
    return Console(
        file=sys.stdout,
        width=None if terminal else WIDE,
        highlight=False,
        soft_wrap=False,
        emoji=False,
        markup=False,
    )


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    totals: Mapping[str, Any] | None = None,
    caption: str | None = None,
    title: str | None = None,
) -> None:
    """Rows as a table of ``columns``; ``totals`` as a last row set apart (a footer),
    ``caption`` under it. No rows: ``(none)`` (and the caption)."""
    out = console()
    if not rows:
        out.print("(none)")
        if caption:
            out.print(caption)
        return
    table = Table(
        *columns,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        show_footer=totals is not None,
        title=title,
        title_justify="left",
        pad_edge=False,
        header_style="bold",
        footer_style="bold",
    )
    if totals is not None:
        for column, name in zip(table.columns, columns, strict=True):
            column.footer = cell(totals.get(name))
    for row in rows:
        table.add_row(*(cell(row.get(column)) for column in columns))
    out.print(table)
    if caption:
        out.print(caption)


def cell(value: Any, width: int = 60) -> str:
    """A value as one short line of text (UTC times to the second, JSON for documents)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, dict | list):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
