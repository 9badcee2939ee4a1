"""The ``jobledger`` command: the ledger for operators and scripts.

Usage::

    jobledger migrate                          # create/upgrade the schema
    jobledger jobs --status failed --since 1d  # newest first, --limit/--page
    jobledger show 20261124211536_2            # job, steps, events, logs, files
    jobledger stats
    jobledger cancel ID|NAME                   # durable cancel + revoke (no terminate)
    jobledger retry ID|NAME                    # failed/canceled -> queued, new message
    jobledger purge --older-than 30 --dry-run
    jobledger report daily-summary
    jobledger lifeline --timeout 300           # one pass
    jobledger worker -- -c 4                   # celery -A app worker …
    jobledger beat                             # celery -A app beat (one or more: one is active)
    jobledger definitions list|show|create|update|enable|disable|archive|run|runs|init

Every command prints a human table by default and a JSON document with ``--json``.

Exit codes: ``0`` done; ``1`` refused or not found (the message says what to do next);
``2`` usage (bad option, malformed job id, unknown status or report); ``3`` the ledger
or broker could not be reached.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from app import cli_options as opt
from app.exceptions import (
    InvalidJobId,
    JobledgerError,
    JobNotFound,
    LedgerUnavailable,
    TransitionRefused,
)
from app.inputs import MAX_DAYS, MAX_PAGE, MAX_ROWS, ago, utc_moment

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
#: Seconds between two progress lines of long commands (on stderr).
PROGRESS_EVERY = 5.0

cli = typer.Typer(
    name="jobledger",
    help="Operate the jobledger job ledger: jobs, cancel, retry, purge, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
JobRef = Annotated[str, typer.Argument(help="The job's UUID or run name (YYYYMMDDhhmmss[_N]).")]


def main() -> None:
    """Entry point of the ``jobledger`` console script."""
    cli()


def _print_version(wanted: bool) -> None:
    if wanted:
        from app.version import version

        typer.echo(f"jobledger {version()}")
        raise typer.Exit(0)


@cli.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Operate the jobledger job ledger: jobs, cancel, retry, purge, reports."""


# -- commands ----------------------------------------------------------------------------


@cli.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Create or upgrade the ledger schema (JOBLEDGER_DATABASE_URL)."""
    from app.migrate import upgrade

    with _errors():
        upgrade(revision)
    typer.echo(f"ledger schema at {revision}")


@cli.command()
def jobs(
    q: opt.Q = None,
    status: opt.Statuses = None,
    job_type: opt.Types = None,
    queue: opt.Queues = None,
    definition: opt.Definition = None,
    worker: opt.Worker = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: every tenant).")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject (budget, dataset…).")] = None,
    created_after: opt.CreatedAfter = None,
    since: Annotated[
        str | None, typer.Option("--since", help="The older name of --created-after.")
    ] = None,
    created_before: opt.CreatedBefore = None,
    dead: opt.Dead = False,
    sort: opt.Sort = "-created",
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 20,
    page: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Page number, from 1.")] = 1,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh the table until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, max=3600, help="Seconds between two --watch refreshes.")
    ] = 2.0,
    watch_count: Annotated[
        int | None, typer.Option(min=1, help="Stop --watch after this many refreshes.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search jobs (newest first unless --sort); the options are the API's query names."""
    wanted = _job_filter(
        tenant,
        q=q,
        status=status,
        job_type=job_type,
        queue=queue,
        definition=definition,
        worker=worker,
        subject=subject,
        created_after=created_after,
        since=since,
        created_before=created_before,
        dead=dead,
        sort=sort,
    )
    if not watch:
        _print_jobs(wanted, limit, page, as_json)
        return
    refreshes = 0
    try:
        while watch_count is None or refreshes < watch_count:
            if refreshes and not as_json:
                typer.echo("\x1b[2J\x1b[H" if sys.stdout.isatty() else "", nl=False)
            _print_jobs(wanted, limit, page, as_json)
            refreshes += 1
            if watch_count is not None and refreshes >= watch_count:
                break
            time.sleep(interval)  # the refresh period the operator asked for
    except KeyboardInterrupt:
        typer.echo("")


def _job_filter(
    tenant: str | None,
    *,
    q: str | None,
    status: list[str] | None,
    job_type: list[str] | None,
    queue: list[str] | None,
    definition: str | None,
    worker: str | None,
    created_after: str | None,
    created_before: str | None,
    dead: bool,
    sort: str = "-created",
    subject: str | None = None,
    since: str | None = None,
) -> Any:
    """The search of the options (:mod:`app.cli_options`); a refused value exits 2
    naming it."""
    from app.ledger.reads import job_search

    with _errors():
        return job_search.JobFilter(
            tenant=tenant,
            text=q,
            statuses=tuple(status or ()),
            types=tuple(job_type or ()),
            queues=tuple(queue or ()),
            definition=definition,
            worker=worker,
            subject=subject,
            created_after=_since(created_after, "--created-after") or _since(since),
            created_before=_since(created_before, "--created-before"),
            dead=dead,
            # checked by JobFilter: an unknown sort is a usage error naming it
            sort=sort,  # type: ignore[arg-type]
        )


def _print_jobs(wanted: Any, limit: int, page: int, as_json: bool) -> None:
    """One page of a search, as a table with its totals or as JSON."""
    from app.ledger.reads import job_search

    with _errors():
        result = job_search.search(wanted, limit=limit, page=page)
        total = job_search.count(wanted)
    if as_json:
        _print_json(
            {
                "items": result.items,
                "page": result.page,
                "limit": result.limit,
                "total": total,
                "has_more": result.has_more,
            }
        )
        return
    columns = (
        "name",
        "id",
        "type",
        "status",
        "progress",
        "tenant",
        "queue",
        "attempts",
        "created_at",
        "duration",
    )
    rows = [{**row, "duration": _seconds(row.get("duration"))} for row in result.items]
    by_status: dict[str, int] = {}
    for row in result.items:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    shown = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    more = f"; next: --page {page + 1}" if result.has_more else ""
    caption = f"page {page}, {len(result.items)} jobs of {total} in all ({shown}){more}"
    _print_table(rows, columns, caption=caption if result.items else f"page {page}, 0 jobs")


def _seconds(value: Any) -> str | None:
    return None if value is None else f"{float(value):.1f}s"


@cli.command()
def submit(
    job_type: Annotated[str, typer.Argument(help="The job type (see `jobledger job-types`).")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="The payload as a JSON object.")
    ] = None,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", "-f", help="key=value (JSON value or text); repeat. Over --payload."
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="The job's tenant (default: default).")] = None,
    subject: Annotated[str | None, typer.Option(help="What the job works on.")] = None,
    priority: Annotated[
        int | None, typer.Option(min=0, max=9, help="0..9 (docs/tasks.md).")
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Route to this queue instead.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a job: validated, recorded queued, then published (as a producer's delay())."""
    from app.ledger.operations import actions as operations
    from app.ledger.reads import reports
    from app.ledger.runtime.task import JobTask

    document = _payload_of(payload, field or [])
    with _definition_errors():
        task = operations.registered_task(job_type)
        if not isinstance(task, JobTask):
            _fail(EXIT_USAGE, f"unknown job type {job_type!r}; known: {', '.join(_job_types())}")
        options: dict[str, Any] = {"created_by": _operator(), "tenant": tenant or "default"}
        options.update({k: v for k, v in (("subject", subject), ("queue", queue)) if v})
        if priority is not None:
            options["priority"] = priority
        with _attributed():
            result = task.apply_async(kwargs=document, **options)
        job = reports.job_detail(str(result.id), log_limit=0).job
    if as_json:
        _print_json({key: job[key] for key in ("id", "name", "type", "status", "tenant", "queue")})
        return
    queued_on = f" on queue {job['queue']}" if job["queue"] else ""
    typer.echo(f"job {job['id']} ({job['name']}) {job['status']}: {job_type}{queued_on}")


def _payload_of(payload: str | None, fields: list[str]) -> dict[str, Any]:
    """The payload of ``--payload`` with each ``--field key=value`` set over it (a value
    that is not JSON is text: ``--field name=x`` and ``--field count=3`` both work)."""
    document: Any = {}
    if payload is not None:
        try:
            document = json.loads(payload)
        except json.JSONDecodeError as error:
            _fail(EXIT_USAGE, f"--payload: not JSON ({error.msg})")
        if not isinstance(document, dict):
            _fail(EXIT_USAGE, '--payload: give a JSON object ({"key": value})')
    for item in fields:
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            _fail(EXIT_USAGE, f"--field {item!r}: use key=value")
        try:
            document[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            document[key.strip()] = text
    return dict(document)


def _job_types() -> list[str]:
    from app.celery import app as celery_app
    from app.ledger.runtime.task import JobTask

    celery_app.loader.import_default_modules()
    return sorted(name for name, task in celery_app.tasks.items() if isinstance(task, JobTask))


def _operator() -> str:
    """Who runs this command, for ``created_by`` and the events it writes
    (``actor_name``): the operating system's login."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's anonymous uid)
        return "cli"


@contextmanager
def _attributed(operation_id: int | None = None) -> Iterator[None]:
    """Record this command's operator on every event written inside the block."""
    from app.ledger.rules.attribution import attributed

    with attributed(_operator(), operation_id=operation_id):
        yield


@cli.command()
def show(
    ref: JobRef,
    logs: Annotated[int, typer.Option(min=0, max=MAX_ROWS, help="Last N log lines.")] = 200,
    as_json: JsonFlag = False,
) -> None:
    """A job with its steps, events, logs and files."""
    from app.ledger.reads import reports

    with _errors():
        detail = reports.job_detail(ref, log_limit=logs)
    if as_json:
        _print_json(detail.as_dict())
        return
    job = detail.job
    for key in (
        "id",
        "name",
        "type",
        "status",
        "progress",
        "tenant",
        "subject",
        "trigger",
        "created_by",
        "attempts",
        "worker",
        "celery_task_id",
        "created_at",
        "started_at",
        "completed_at",
        "failure_reason",
        "result_url",
    ):
        if job.get(key) is not None:
            typer.echo(f"{key:>15}: {_cell(job[key], 200)}")
    for key in ("payload", "result", "errors"):
        if job.get(key):
            typer.echo(f"{key:>15}: {json.dumps(job[key], default=str)[:500]}")
    if detail.steps:
        typer.echo("\nsteps")
        _print_table(
            detail.steps,
            ("position", "step_type", "status", "attempts", "started_at", "completed_at"),
        )
    typer.echo("\nevents")
    _print_table(
        detail.events,
        ("created_at", "from_status", "to_status", "actor", "attempt", "worker", "message"),
    )
    if detail.files:
        typer.echo("\nfiles")
        _print_table(detail.files, ("direction", "uri", "bytes", "records", "sha256"))
    if detail.logs:
        typer.echo("\nlogs")
        for line in detail.logs:
            typer.echo(f"{_cell(line['created_at'])} {line['level']:<7} {line['message']}")


@cli.command()
def stats(
    tenant: Annotated[str | None, typer.Option(help="Tenant.")] = None,
    since: Annotated[str | None, typer.Option(help="Created since (ISO or 7d).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Counts per status and per type; live jobs and the oldest of them."""
    from app.ledger.reads import reports

    with _errors():
        result = reports.stats(tenant=tenant, since=_since(since))
    if as_json:
        _print_json(result)
        return
    statuses = list(result["by_status"])
    rows = [{"type": t, **{s: c.get(s, 0) for s in statuses}} for t, c in result["by_type"].items()]
    totals = {"type": "TOTAL", **result["by_status"]}
    _print_table(rows, ("type", *statuses), totals=totals)
    oldest = result["oldest_live_created_at"]
    typer.echo(
        f"{result['live']} live jobs" + (f", oldest created {_cell(oldest)}" if oldest else "")
    )


@cli.command()
def cancel(
    ref: JobRef,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the job's history).")] = None,
    terminate: Annotated[
        bool,
        typer.Option(
            help="Also SIGTERM the running process (last resort: it may run another job)."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a queued or running job (a running job stops at its next checkpoint)."""
    from app.ledger.operations import actions as operations

    with _errors(), _attributed():
        result = operations.cancel(ref, actor="cli", reason=reason, terminate=terminate)
    if as_json:
        _print_json({"job_id": result.job_id, "outcome": result.outcome, "revoked": result.revoked})
        return
    what = {
        "canceled": "canceled: it will not run",
        "requested": "cancel requested: it stops at its next checkpoint",
        "already_requested": "a cancel was already requested: it stops at its next checkpoint",
    }[result.outcome]
    typer.echo(f"job {result.job_id} {what}")


@cli.command()
def retry(ref: JobRef, as_json: JsonFlag = False) -> None:
    """Queue a failed or canceled job again (same job id, history kept, new message)."""
    from app.ledger.operations import actions as operations

    with _errors(), _attributed():
        result = operations.retry(ref, actor="cli")
    if as_json:
        _print_json({"job_id": result.job_id, "celery_task_id": result.celery_task_id})
        return
    typer.echo(f"job {result.job_id} queued again as task {result.celery_task_id}")


@cli.command()
def purge(
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            max=MAX_DAYS,
            help="Days (default JOBLEDGER_RETENTION_DAYS).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only, delete nothing.")] = False,
    batch_size: Annotated[
        int | None, typer.Option(min=1, max=MAX_ROWS, help="Most jobs per transaction.")
    ] = None,
    pause_factor: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Pause after each batch, times its duration (default "
            "JOBLEDGER_PURGE_PAUSE_FACTOR; 0: purge as fast as possible).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete terminal jobs finished before the retention (archive and rollups first).

    Runs here, now, reporting progress on stderr; beat runs the same purge daily as the
    ``purge`` job."""
    from app.ledger.operations import retention

    last_report = time.monotonic()

    def report_progress(progress: retention.PurgeResult) -> None:
        nonlocal last_report
        if time.monotonic() - last_report >= PROGRESS_EVERY:
            last_report = time.monotonic()
            typer.echo(
                f"purged {progress.deleted} of {progress.candidates} jobs "
                f"({progress.batches} batches, paused {progress.paused_seconds:.0f} s)",
                err=True,
            )

    with _errors():
        result = retention.purge(
            older_than_days=older_than,
            dry_run=dry_run,
            batch_size=batch_size,
            pause_factor=pause_factor,
            between_batches=report_progress,
        )
    if as_json:
        _print_json(result.as_dict())
        return
    cutoff = f"{result.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    if dry_run:
        children = ", ".join(f"{n} {name}" for name, n in result.children.items())
        typer.echo(f"would delete {result.deleted} jobs finished before {cutoff} ({children})")
        return
    typer.echo(
        f"deleted {result.deleted} jobs finished before {cutoff} in {result.batches} batches; "
        f"archived {result.archived}, rolled up {result.rolled_up}, "
        f"{result.counters_deleted} run-name counters"
    )
    if result.vacuumed:
        typer.echo(f"vacuumed {', '.join(result.vacuumed)} in {result.vacuum_seconds:.1f} s")
    if result.kept_unarchived:
        typer.echo(retention.kept_message(result.kept_unarchived))
    for path in result.archive_files:
        typer.echo(f"archive: {path}")


@cli.command()
def report(
    name: Annotated[
        str | None, typer.Argument(help="Report name; all of them when omitted.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_ROWS, help="Rows per report.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The reporting views as tables.

    Reports: status-counts, daily-summary, daily-history, recent-failures, step-durations.
    """
    from app.ledger.reads import reports

    names = [name] if name else list(reports.REPORTS)
    if name is not None and name not in reports.REPORTS:
        _fail(EXIT_USAGE, f"unknown report {name!r}; known: {', '.join(reports.REPORTS)}")
    with _errors():
        results = {n: reports.report(n, limit=limit) for n in names}
    if as_json:
        _print_json(results if name is None else results[name])
        return
    for report_name, rows in results.items():
        typer.echo(f"== {report_name}")
        if rows:
            _print_table(rows, tuple(rows[0]))
        else:
            typer.echo("(no rows)")
        typer.echo("")


@cli.command()
def lifeline(
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            max=MAX_DAYS * 86400,
            help="Seconds without heartbeat (default JOBLEDGER_LIFELINE_TIMEOUT).",
        ),
    ] = None,
    ping: Annotated[bool, typer.Option(help="Also ping the workers.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """One lifeline pass over orphaned running jobs and queued jobs without a message.

    Orphaned jobs are failed ("worker lost") or re-queued when their task allows it.
    """
    from app.ledger.operations import lifeline as rescue

    with _errors():
        result = rescue.run_once(timeout=timeout, ping=ping)
    if as_json:
        _print_json(result.as_dict())
        return
    typer.echo(
        f"failed {len(result.failed)} orphaned, re-queued {len(result.requeued)}, "
        f"failed {len(result.queued_failed)} queued without a message, gave back "
        f"{len(result.restored)} messages of gone workers"
    )
    for job_id in [*result.failed, *result.requeued, *result.queued_failed]:
        typer.echo(f"  {job_id}")


@cli.command("settle-counts")
def settle_counts(
    rebuild: Annotated[
        bool, typer.Option(help="Forget the settled counts and recount every job.")
    ] = False,
) -> None:
    """Settle the status counts now (beat does it every minute); --rebuild recounts all."""
    from app.ledger.reads import counts

    with _errors():
        settled = counts.rebuild() if rebuild else counts.settle()
    typer.echo(f"settled {settled} finished jobs into the status counts")


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@cli.command(context_settings=_PASS_THROUGH)
def worker(ctx: typer.Context) -> None:
    """``celery -A app worker`` with the given extra arguments."""
    _exec_celery("worker", ctx.args)


@cli.command(context_settings=_PASS_THROUGH)
def beat(ctx: typer.Context) -> None:
    """``celery -A app beat`` with the given extra arguments.

    Beat fires the ledger's definitions; several beats may run (one holds the lease and
    fires, the others take over when it dies), and each firing makes at most one job.
    """
    _exec_celery("beat", ctx.args)


# -- definitions -------------------------------------------------------------------------

definitions_cli = typer.Typer(
    help="Job definitions: named jobs of a tenant, maybe on a schedule (beat runs them).",
    no_args_is_help=True,
)
cli.add_typer(definitions_cli, name="definitions")

TenantOption = Annotated[str, typer.Option("--tenant", help="The definition's tenant.")]
DefinitionName = Annotated[str, typer.Argument(help="The definition's name.")]
PayloadOption = Annotated[
    str | None, typer.Option("--payload", help="The job's payload as JSON: '{\"value\": 1}'.")
]
CronOption = Annotated[str | None, typer.Option("--cron", help="A cron expression: '*/5 * * * *'.")]
TimezoneOption = Annotated[
    str | None, typer.Option("--timezone", help="The cron's time zone (default UTC).")
]
EveryOption = Annotated[int | None, typer.Option("--every", help="Or run every this many seconds.")]
ScheduleOption = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help='Or the schedule as JSON: \'{"cron": "0 3 * * *", "timezone": "UTC"}\', '
        "'{\"every\": 30}'.",
    ),
]
CatchUpOption = Annotated[
    str | None,
    typer.Option("--catch-up", help="Firings missed while no beat ran: skip, or once."),
]
OptionsOption = Annotated[
    str | None,
    typer.Option("--options", help='Run options as JSON: \'{"queue": "bulk"}\'.'),
]


@definitions_cli.command("list")
def definitions_list(
    tenant: TenantOption = "default",
    include_archived: Annotated[
        bool, typer.Option("--all", help="Archived definitions too.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The tenant's definitions: schedule in words, next run, last status."""
    from app.ledger import definitions
    from app.ledger.reads import definitions as definition_reads

    with _definition_errors():
        documents = definition_reads.documents(
            definitions.list_(tenant, include_archived=include_archived)
        )
    if as_json:
        _print_json({"items": documents, "total": len(documents)})
        return
    _print_table(
        documents,
        ("name", "type", "enabled", "schedule_text", "next_run_at", "last_status", "version"),
    )


@definitions_cli.command("show")
def definitions_show(
    name: DefinitionName, tenant: TenantOption = "default", as_json: JsonFlag = False
) -> None:
    """One definition with its payload, schedule, options and last run."""
    document = _definition_document(tenant, name)
    if as_json:
        _print_json(document)
        return
    _print_definition(document)


@definitions_cli.command("create")
def definitions_create(
    name: DefinitionName,
    job_type: Annotated[str, typer.Option("--type", "-t", help="The job type.")],
    payload: PayloadOption = None,
    cron: CronOption = None,
    timezone: TimezoneOption = None,
    every: EveryOption = None,
    schedule_json: ScheduleOption = None,
    catch_up: CatchUpOption = None,
    options: OptionsOption = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    tenant: TenantOption = "default",
    as_json: JsonFlag = False,
) -> None:
    """Create a definition (validated against the job type's payload schema)."""
    from app.ledger import definitions

    schedule = _schedule_of(cron, timezone, every, schedule_json)
    _check_catch_up(catch_up)
    with _definition_errors():
        created = definitions.create(
            tenant=tenant,
            name=name,
            type=job_type,
            payload=_json_object("--payload", payload) if payload is not None else {},
            schedule=schedule,
            enabled=not disabled,
            catch_up=catch_up if catch_up is not None else "skip",
            options=_json_object("--options", options) if options is not None else None,
            actor="cli",
            changed_by=_operator(),
        )
    _show_changed(tenant, created.name, as_json, "created")


@definitions_cli.command("update")
def definitions_update(
    name: DefinitionName,
    payload: PayloadOption = None,
    cron: CronOption = None,
    timezone: TimezoneOption = None,
    every: EveryOption = None,
    schedule_json: ScheduleOption = None,
    unschedule: Annotated[
        bool, typer.Option("--unschedule", help="Remove the schedule (runs by hand only).")
    ] = False,
    catch_up: CatchUpOption = None,
    options: OptionsOption = None,
    tenant: TenantOption = "default",
    as_json: JsonFlag = False,
) -> None:
    """Change a definition's payload, schedule, catch-up or options (a new version)."""
    changes: dict[str, Any] = {}
    if payload is not None:
        changes["payload"] = _json_object("--payload", payload)
    schedule = _schedule_of(cron, timezone, every, schedule_json)
    if schedule is not None and unschedule:
        _fail(EXIT_USAGE, "give either a schedule (--cron/--every/--schedule) or --unschedule")
    if schedule is not None or unschedule:
        changes["schedule"] = schedule
    if catch_up is not None:
        _check_catch_up(catch_up)
        changes["catch_up"] = catch_up
    if options is not None:
        changes["options"] = _json_object("--options", options)
    if not changes:
        _fail(
            EXIT_USAGE,
            "nothing to change: give --payload, --cron/--every/--schedule, --unschedule, "
            "--catch-up or --options",
        )
    _update_definition(tenant, name, changes, as_json, "updated")


@definitions_cli.command("enable")
def definitions_enable(
    name: DefinitionName, tenant: TenantOption = "default", as_json: JsonFlag = False
) -> None:
    """Enable a definition: beat runs it on its schedule again."""
    _update_definition(tenant, name, {"enabled": True}, as_json, "enabled")


@definitions_cli.command("disable")
def definitions_disable(
    name: DefinitionName, tenant: TenantOption = "default", as_json: JsonFlag = False
) -> None:
    """Disable a definition: beat stops running it (it can still be run by hand)."""
    _update_definition(tenant, name, {"enabled": False}, as_json, "disabled")


@definitions_cli.command("archive")
def definitions_archive(
    name: DefinitionName, tenant: TenantOption = "default", as_json: JsonFlag = False
) -> None:
    """Archive a definition: no more runs, hidden from lists; its runs are kept."""
    _update_definition(tenant, name, {"archived": True}, as_json, "archived")


@definitions_cli.command("run")
def definitions_run(
    name: DefinitionName, tenant: TenantOption = "default", as_json: JsonFlag = False
) -> None:
    """Run a definition now (trigger ``manual``); prints the job."""
    from app.ledger import definitions
    from app.ledger.reads import reports

    with _definition_errors():
        found = definitions.get(tenant, name)
        if found is None:
            _no_definition(tenant, name)
        if found.archived_at is not None:
            _fail(EXIT_USAGE, f"definition {name!r} is archived: it does not run")
        job_id = definitions.run(
            tenant, name, scheduled_for=None, trigger="manual", created_by=_operator()
        )
        if job_id is None:
            _fail(EXIT_REFUSED, "this run already has its job")
        job = reports.job_detail(job_id, log_limit=0).job
    if as_json:
        _print_json(job)
        return
    typer.echo(f"job {job['id']} ({job['name']}) {job['status']}, from definition {name!r}")


@definitions_cli.command("runs")
def definitions_runs(
    name: DefinitionName,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Repeat for several.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 20,
    page: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="Page number, from 1.")] = 1,
    tenant: TenantOption = "default",
    as_json: JsonFlag = False,
) -> None:
    """The jobs made from a definition, newest first."""
    from app.ledger import definitions
    from app.ledger.reads import reports

    with _definition_errors():
        found = definitions.get(tenant, name)
        if found is None:
            _no_definition(tenant, name)
        filters = reports.JobFilter(
            status=tuple(status or ()), tenant=tenant, definition_id=found.id
        )
        result = reports.list_jobs(filters, limit=limit, page=page)
        total = reports.count_jobs(filters)
    if as_json:
        _print_json(
            {
                "items": result.items,
                "page": result.page,
                "limit": result.limit,
                "total": total,
                "has_more": result.has_more,
            }
        )
        return
    _print_table(result.items, ("name", "id", "status", "trigger", "scheduled_for", "created_at"))
    more = f"; next: --page {page + 1}" if result.has_more else ""
    typer.echo(f"page {page}, {len(result.items)} of {total} runs{more}")


@definitions_cli.command("init")
def definitions_init(as_json: JsonFlag = False) -> None:
    """Create the built-in definitions that are missing (purge, lifeline, the scheduled
    sync_and_suggest per budget…) from their settings; existing ones are left as they are."""
    from app.ledger.operations.builtin_definitions import ensure_builtin_definitions
    from app.ledger.reads import definitions as definition_reads

    with _definition_errors():
        created = ensure_builtin_definitions(actor="cli", changed_by=_operator())
        documents = definition_reads.documents(created)
    if as_json:
        _print_json({"created": documents})
        return
    if not documents:
        typer.echo("every built-in definition exists already (none changed)")
        return
    for document in documents:
        typer.echo(f"created {document['tenant']}/{document['name']}: {document['schedule_text']}")


def _definition_document(tenant: str, name: str) -> dict[str, Any]:
    from app.ledger import definitions
    from app.ledger.reads import definitions as definition_reads

    with _definition_errors():
        found = definitions.get(tenant, name)
        if found is None:
            _no_definition(tenant, name)
        return definition_reads.documents([found])[0]


def _update_definition(
    tenant: str, name: str, changes: dict[str, Any], as_json: bool, done: str
) -> None:
    from app.ledger import definitions

    with _definition_errors():
        try:
            updated = definitions.update(tenant, name, changes, actor="cli", changed_by=_operator())
        except LookupError:
            _no_definition(tenant, name)
    _show_changed(tenant, updated.name, as_json, done)


def _show_changed(tenant: str, name: str, as_json: bool, done: str) -> None:
    document = _definition_document(tenant, name)
    if as_json:
        _print_json(document)
        return
    typer.echo(f"definition {name!r} {done} (version {document['version']})")
    _print_definition(document)


def _print_definition(document: dict[str, Any]) -> None:
    for key in (
        "name",
        "tenant",
        "type",
        "enabled",
        "archived_at",
        "schedule_text",
        "catch_up",
        "next_run_at",
        "last_fired_for",
        "last_status",
        "version",
        "created_by",
        "created_at",
        "updated_at",
    ):
        if document.get(key) is not None:
            typer.echo(f"{key:>15}: {_cell(document[key], 200)}")
    for key in ("payload", "options"):
        if document.get(key):
            typer.echo(f"{key:>15}: {json.dumps(document[key], default=str)[:500]}")


def _no_definition(tenant: str, name: str) -> NoReturn:
    _fail(EXIT_USAGE, f"no definition named {name!r} in tenant {tenant!r}")


def _schedule_of(
    cron: str | None, timezone: str | None, every: int | None, schedule_json: str | None
) -> dict[str, Any] | None:
    if sum(given is not None for given in (cron, every, schedule_json)) > 1:
        _fail(EXIT_USAGE, "give one of --cron, --every or --schedule")
    if schedule_json is not None:
        if timezone is not None:
            _fail(EXIT_USAGE, "--timezone goes with --cron (put it in --schedule instead)")
        return _json_object("--schedule", schedule_json)
    if timezone is not None and cron is None:
        _fail(EXIT_USAGE, "--timezone goes with --cron")
    if cron is not None:
        return {"cron": cron} if timezone is None else {"cron": cron, "timezone": timezone}
    if every is not None:
        return {"every": every}
    return None


def _check_catch_up(value: str | None) -> None:
    if value is not None and value not in ("skip", "once"):
        _fail(EXIT_USAGE, f"--catch-up (catch_up): must be skip or once, got {value!r}")


def _json_object(option: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        _fail(EXIT_USAGE, f"{option}: not JSON ({error})")
    if not isinstance(value, dict):
        _fail(EXIT_USAGE, f"{option}: give a JSON object ({{...}})")
    return value


@contextmanager
def _definition_errors() -> Iterator[None]:
    """Refusals of the definitions door as usage errors (exit 2) naming the field; the
    rest as :func:`_errors` says."""
    from app.exceptions import DefinitionArchived, DefinitionExists, InvalidPayload

    with _errors():
        try:
            yield
        except InvalidPayload as error:
            _fail(
                EXIT_USAGE,
                "; ".join(f"{field}: {problem}" for field, problem in error.fields.items()),
            )
        except (DefinitionExists, DefinitionArchived) as error:
            _fail(EXIT_USAGE, str(error))


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def _errors() -> Iterator[None]:
    """Map jobledger's errors onto messages and exit codes."""
    try:
        yield
    except InvalidJobId as error:
        _fail(EXIT_USAGE, str(error))
    except (JobNotFound, TransitionRefused) as error:
        _fail(EXIT_REFUSED, str(error))
    except LedgerUnavailable as error:
        _fail(EXIT_UNAVAILABLE, str(error))
    except JobledgerError as error:
        _fail(EXIT_REFUSED, str(error))
    except (ValueError, KeyError) as error:  # unknown status word, bad page…
        _fail(EXIT_USAGE, str(error).strip("'\""))
    except Exception as error:
        if _is_connection_error(error):
            _fail(
                EXIT_UNAVAILABLE,
                f"could not use the ledger or broker ({type(error).__name__}: "
                f"{_first_line(error)}); check JOBLEDGER_DATABASE_URL / JOBLEDGER_BROKER_URL "
                "and run `jobledger migrate`",
            )
        raise


def _is_connection_error(error: Exception) -> bool:
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import OperationalError, ProgrammingError

    return isinstance(error, OperationalError | ProgrammingError | BrokerError | OSError)


def _first_line(error: Exception) -> str:
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _fail(code: int, message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(value: str | None, option: str = "--since") -> datetime | None:
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        try:
            return ago(int(match.group(1)), _UNITS[match.group(2)])
        except ValueError:
            _fail(EXIT_USAGE, f"{option} {value!r}: out of range, give a smaller amount")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        _fail(EXIT_USAGE, f"{option} {value!r}: use an ISO date/time (2026-11-24) or 30m, 12h, 7d")
    try:
        return utc_moment(moment)
    except ValueError as error:
        _fail(EXIT_USAGE, f"{option} {value!r}: {error}")


def _print_json(document: Any) -> None:
    from app.ledger.reads.reports import jsonable

    typer.echo(json.dumps(jsonable(document), indent=2, sort_keys=True))


def _cell(value: Any, width: int = 60) -> str:
    from app.cli_tables import cell

    return cell(value, width)


def _print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    totals: dict[str, Any] | None = None,
    caption: str | None = None,
) -> None:
    from app.cli_tables import print_table

    print_table(rows, columns, totals=totals, caption=caption)


def _exec_celery(command: str, extra: list[str]) -> NoReturn:
    argv = [sys.executable, "-m", "celery", "-A", "app", command, *extra]
    os.execv(sys.executable, argv)  # noqa: S606  (become celery: signals reach it directly)


# the bulk and operations commands use the helpers above
from app.cli_bulk import bulk_cli, operations_cli  # noqa: E402

cli.add_typer(bulk_cli, name="bulk")
cli.add_typer(operations_cli, name="operations")

if __name__ == "__main__":
    main()
