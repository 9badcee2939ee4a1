"""``jobledger bulk cancel|retry`` and ``jobledger operations``: bulk operations from the
command line (:mod:`app.ledger.operations.bulk`), the same as ``POST /operations``.

Usage::

    jobledger bulk retry --name retry-exports --tenant acme --status failed --type export --dry-run
    jobledger bulk retry --name retry-exports --tenant acme --status failed --type export --yes
    jobledger operations list --tenant acme
    jobledger operations show 7 --tenant acme

Without ``--yes`` the command shows the dry-run count and asks before acting. Progress
(``done``/``skipped`` of ``matched``) goes to the standard error after each batch. The
events name the operation and the operator (the login running the command); the actor is
``cli``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from app import cli_options as opt

bulk_cli = typer.Typer(
    help="Cancel or retry every job of a tenant matching a filter, as one named operation.",
    no_args_is_help=True,
)
operations_cli = typer.Typer(help="Bulk operations: list, show.", no_args_is_help=True)

Name = Annotated[
    str,
    typer.Option("--name", help="The operation's name; the same name again acts on nothing twice."),
]
Tenant = Annotated[str, typer.Option("--tenant", help="The tenant whose jobs it acts on.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count only: nothing is done.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Act without asking.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _bulk_command(action: str, summary: str) -> None:
    """Register ``jobledger bulk <action>``: cancel and retry take the same options."""

    def command(
        name: Name,
        tenant: Tenant = "default",
        q: opt.Q = None,
        status: opt.Statuses = None,
        job_type: opt.Types = None,
        queue: opt.Queues = None,
        definition: opt.Definition = None,
        worker: opt.Worker = None,
        created_after: opt.CreatedAfter = None,
        created_before: opt.CreatedBefore = None,
        dead: opt.Dead = False,
        dry_run: DryRun = False,
        yes: Yes = False,
        as_json: Json = False,
    ) -> None:
        _bulk(action, name, tenant, dry_run, yes, as_json, locals())

    command.__doc__ = summary
    bulk_cli.command(action)(command)


_bulk_command("cancel", "Cancel every queued, retrying or running job that matches.")
_bulk_command("retry", "Retry every failed or canceled job that matches.")


@operations_cli.command("list")
def list_operations(
    tenant: Tenant = "default",
    limit: Annotated[int, typer.Option(min=1, max=500, help="Operations per page.")] = 50,
    page: Annotated[int, typer.Option(min=1, max=1_000_000, help="Page, from 1.")] = 1,
    as_json: Json = False,
) -> None:
    """The tenant's operations, newest first."""
    from app.cli import _errors, _print_json, _print_table
    from app.ledger.operations import bulk

    with _errors():
        items, total = bulk.listed(tenant, limit=limit, page=page)
    rows = [asdict(operation) for operation in items]
    if as_json:
        _print_json({"items": rows, "page": page, "limit": limit, "total": total})
        return
    totals = {
        "id": "TOTAL",
        "matched": sum(row["matched"] for row in rows),
        "done": sum(row["done"] for row in rows),
        "skipped": sum(row["skipped"] for row in rows),
    }
    columns = (
        "id",
        "name",
        "action",
        "status",
        "matched",
        "done",
        "skipped",
        "created_by",
        "created_at",
    )
    _print_table(rows, columns, totals=totals, caption=f"page {page}, {len(rows)} of {total}")


@operations_cli.command("show")
def show_operation(
    operation_id: Annotated[int, typer.Argument(help="The operation's id.")],
    tenant: Tenant = "default",
    as_json: Json = False,
) -> None:
    """One operation: its filter, who ran it, its progress."""
    from app.cli import _errors
    from app.ledger.operations import bulk

    with _errors():
        operation = bulk.get(tenant, operation_id)
    _print_operation(operation.as_dict(), as_json)


def _bulk(
    action: str,
    name: str,
    tenant: str,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    options: dict[str, Any],
) -> None:
    from app.cli import _attributed, _errors, _fail, _job_filter, _operator, _print_json
    from app.ledger.operations import bulk
    from app.ledger.reads.job_search import FILTER_NAMES

    # the filter's names as job_search states them (``type`` is ``job_type`` here)
    parameters = ["job_type" if word == "type" else word for word in FILTER_NAMES]
    wanted = _job_filter(tenant, **{key: options[key] for key in parameters})
    kind: bulk.Action = "cancel" if action == "cancel" else "retry"
    with _errors():
        matched = bulk.preview(kind, wanted)
    if dry_run:
        if as_json:
            _print_json(
                {"action": action, "name": name, "filter": wanted.as_query(), "matched": matched}
            )
        else:
            typer.echo(f"{action} would act on {matched} jobs of tenant {tenant!r} (dry run)")
        return
    if not yes and not typer.confirm(f"{action} {matched} jobs of tenant {tenant!r}?"):
        _fail(1, "nothing done")

    def progress(operation: bulk.Operation) -> None:
        typer.echo(
            f"{operation.name}: {operation.done} done, {operation.skipped} skipped "
            f"of {operation.matched}",
            err=True,
        )

    with _errors(), _attributed():  # too large, or the name taken: exit 1 saying so
        operation = bulk.run(kind, wanted, name, _operator(), via="cli", on_progress=progress)
    _print_operation(operation.as_dict(), as_json)


def _print_operation(document: dict[str, Any], as_json: bool) -> None:
    from app.cli import _print_json

    if as_json:
        _print_json(document)
        return
    for key, value in document.items():
        typer.echo(f"{key:>12}: {value if value is not None else ''}")
