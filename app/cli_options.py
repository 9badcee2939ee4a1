"""The search's options, stated once for ``jobledger jobs`` and ``jobledger bulk``: the
same names as the API's query parameters (``--q``, ``--status``, ``--type``, ``--queue``,
``--definition``, ``--worker``, ``--created-after``, ``--created-before``, ``--dead``,
``--sort``), so a filter tried with ``jobs`` is the filter a bulk operation acts on."""

from __future__ import annotations

from typing import Annotated

import typer

Q = Annotated[
    str | None, typer.Option("--q", "-q", help="Id, run name prefix, subject or failure text.")
]
Statuses = Annotated[list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")]
Types = Annotated[
    list[str] | None, typer.Option("--type", "-t", help="Job type; repeat for several.")
]
Queues = Annotated[list[str] | None, typer.Option("--queue", help="Queue; repeat for several.")]
Definition = Annotated[str | None, typer.Option("--definition", help="Runs of this definition.")]
Worker = Annotated[str | None, typer.Option("--worker", help="Run by this worker (celery@host).")]
CreatedAfter = Annotated[
    str | None, typer.Option("--created-after", help="ISO date/time, or 30m, 12h, 7d ago.")
]
CreatedBefore = Annotated[
    str | None, typer.Option("--created-before", help="ISO date/time, or 30m, 12h, 7d ago.")
]
Dead = Annotated[bool, typer.Option("--dead", help="Dead jobs only.")]
Sort = Annotated[
    str, typer.Option("--sort", help="created, finished or duration; '-' first for descending.")
]
