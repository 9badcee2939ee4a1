"""The door of job definitions: the only writer of ``job_definitions`` and its change log.

A definition is what a job *is* (type, payload, optional schedule, run options), named
per tenant; each job made from it records the definition, its version then, and for a
scheduled run the firing it is (``scheduled_for``). The database makes each firing
create at most one job (unique ``(definition_id, scheduled_for)``), so any number of
beats may fire it: :func:`run` of a firing that has its job returns None and publishes
nothing.

- :func:`create`, :func:`update`: validate everything first (the job type exists, the
  payload passes the type's payload model with the tenant as validation context, as
  ``delay()`` does; the schedule; the run options) and raise
  :class:`~app.exceptions.InvalidPayload` naming the field, having written nothing.
  Each change writes one append-only ``job_definition_changes`` row (who, what from,
  what to; the whole definition on creation) in the same transaction, and bumps the
  version. Definitions are never deleted: disable or archive them (jobs point at them
  with ON DELETE RESTRICT).
- :func:`due`, :func:`advance`: the scheduler's two questions (which firings to make
  now; move a definition past a firing, once, whichever beat asks).

Payloads are stored as given, since a definition's must run later (a job's stored
payload is sanitised, its message carrying the real values): so a payload field the
ledger's redaction would mask (a URL with a password, a token, a secret-named key) is
refused, naming the field, and secrets still never enter the ledger.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError

from app.config import QUEUE_NAME
from app.db import engine, in_transaction
from app.exceptions import (
    DefinitionArchived,
    DefinitionExists,
    DefinitionNotFound,
    InvalidPayload,
)
from app.inputs import unstorable_fields
from app.ledger import engines
from app.ledger.engines.base import aware
from app.ledger.rules import schedules
from app.ledger.rules.actors import Actor, Trigger
from app.ledger.rules.redaction import redact_data
from models.tables import definition_changes, definitions

#: Bounds of a scheduled run's message expiry (:func:`expiry`), in seconds.
MIN_EXPIRY, MAX_EXPIRY = 30.0, 12 * 3600.0

log = logging.getLogger(__name__)

#: What :func:`update` may change.
CHANGEABLE = ("payload", "schedule", "enabled", "catch_up", "options", "archived")
CATCH_UP = ("skip", "once")
#: Run options a definition may carry (applied to each run's ``apply_async``).
RUN_OPTIONS = ("queue", "priority", "time_limit", "soft_time_limit", "retry_policy")
#: Why a payload field that holds a secret is refused (redaction would mask it).
NOT_KEPT = (
    "holds a secret (a password, token or credential, which the ledger masks as ***): a "
    "definition keeps its payload to run it later and secrets never enter the ledger, so "
    "keep it in the settings (a database source in JOBLEDGER_DATABASE_SOURCES, a URL "
    "without credentials)"
)
#: A definition's name: it is a path segment of the API (``/definitions/{name}``).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
#: Cron firings stepped through to find the latest due one (a month of minutes); a
#: definition left unfired for longer is looked at over its last day only.
MAX_CRON_STEPS = 45_000
#: Tries of an update that lost a race with another update of the same definition.
UPDATE_TRIES = 5


@dataclass(frozen=True)
class Definition:
    """One definition as stored (timestamps aware UTC)."""

    id: uuid.UUID
    tenant: str
    name: str
    type: str
    payload: dict[str, Any]
    schedule: dict[str, Any] | None
    enabled: bool
    catch_up: str
    options: dict[str, Any]
    version: int
    archived_at: datetime | None
    next_run_at: datetime | None
    last_fired_for: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @property
    def schedule_text(self) -> str:
        """The schedule in words (:func:`app.ledger.rules.schedules.describe`)."""
        return schedules.describe(self.schedule)

    def document(self) -> dict[str, Any]:
        """What a definition is, as JSON (the change log's creation row)."""
        return {
            "tenant": self.tenant,
            "name": self.name,
            "type": self.type,
            "payload": self.payload,
            "schedule": self.schedule,
            "enabled": self.enabled,
            "catch_up": self.catch_up,
            "options": self.options,
        }


# -- writing ------------------------------------------------------------------------------


def create(
    *,
    tenant: str,
    name: str,
    type: str,
    payload: dict[str, Any],
    schedule: dict[str, Any] | None = None,
    enabled: bool = True,
    catch_up: str = "skip",
    options: dict[str, Any] | None = None,
    actor: Actor,
    changed_by: str | None,
) -> Definition:
    """Create a definition (version 1) and its creation row in the change log.

    Raises:
        InvalidPayload: naming the field (``type``, ``payload.<field>``, ``schedule.cron``,
            ``schedule.timezone``, ``schedule.every``, ``options.<option>``, ``name``,
            ``enabled``, ``catch_up``); nothing written.
        DefinitionExists: the tenant has a definition of that name; nothing written.
    """
    _check_tenant(tenant, type)
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidPayload(
            str(type), {"name": f"must match {NAME.pattern} (it names the definition in URLs)"}
        )
    values = {
        "type": type,
        "payload": payload,
        "schedule": schedule,
        "enabled": enabled,
        "catch_up": catch_up,
        "options": {} if options is None else options,
    }
    checked = _checked(tenant, str(type), values)
    definition_id = uuid.uuid4()

    def work(connection: Connection) -> Definition:
        if _row(connection, tenant, name) is not None:
            raise DefinitionExists(tenant, name)
        now = engines.current().database_now(connection)
        connection.execute(
            definitions.insert().values(
                id=definition_id,
                tenant=tenant,
                name=name,
                type=checked["type"],
                payload=checked["payload"],
                schedule=checked["schedule"],
                enabled=checked["enabled"],
                catch_up=checked["catch_up"],
                options=checked["options"],
                version=1,
                next_run_at=_next_run(checked["schedule"], checked["enabled"], False, now),
                created_by=changed_by,
            )
        )
        created = _definition(_row(connection, tenant, name))
        _log(connection, created, created.document(), actor=actor, changed_by=changed_by)
        return created

    try:
        return in_transaction(work, f"definition {name!r} created")
    except IntegrityError:  # a concurrent create of the same name won
        raise DefinitionExists(tenant, name) from None


def update(
    tenant: str, name: str, changes: dict[str, Any], *, actor: Actor, changed_by: str | None
) -> Definition:
    """Apply ``changes`` (any of payload, schedule, enabled, catch_up, options, archived)
    as one new version with one change-log row; fields given their current value are no
    change, and an update that changes nothing writes nothing. The next firing is
    recomputed from now when the schedule, enabled or archived changes.

    Raises:
        DefinitionNotFound: (a LookupError) no such definition in this tenant.
        InvalidPayload: naming the field; nothing written.
    """
    unknown = sorted(set(changes) - set(CHANGEABLE))
    current = get(tenant, name)
    if current is None:
        raise DefinitionNotFound(tenant, name)
    if unknown:
        raise InvalidPayload(
            current.type,
            {f: f"cannot be changed (changeable: {', '.join(CHANGEABLE)})" for f in unknown},
        )
    archived = changes.get("archived", current.archived)
    if not isinstance(archived, bool):
        raise InvalidPayload(current.type, {"archived": f"must be true or false, got {archived!r}"})
    given = {key: value for key, value in changes.items() if key != "archived"}
    _checked(tenant, current.type, {**current.document(), **given})  # fail before the loop

    def attempt(connection: Connection) -> Definition | None:
        # The row is locked (PostgreSQL) for the read, the check and the write: concurrent
        # updates apply one after another, each on the version before it. SQLite takes
        # one writer at a time; a writer that read an older version is refused by the
        # version guard of _apply and tries again.
        row = connection.execute(_select(tenant, name).with_for_update()).mappings().first()
        if row is None:
            raise DefinitionNotFound(tenant, name)
        current = _definition(row)
        merged = _checked(tenant, current.type, {**current.document(), **given})
        before = {**current.document(), "archived": current.archived}
        after = {**merged, "archived": archived}
        diff = {
            field: {"from": before[field], "to": after[field]}
            for field in ("payload", "schedule", "enabled", "catch_up", "options", "archived")
            if before[field] != after[field]
        }
        if not diff:
            return current
        return _apply(
            connection,
            current=current,
            merged=merged,
            archived=archived,
            diff=diff,
            actor=actor,
            changed_by=changed_by,
        )

    for _ in range(UPDATE_TRIES):
        outcome = in_transaction(attempt, f"definition {name!r} updated")
        if outcome is not None:
            return outcome
    raise RuntimeError(
        f"definition {name!r} kept changing under this update ({UPDATE_TRIES} tries): try again"
    )


def _apply(
    connection: Connection,
    *,
    current: Definition,
    merged: dict[str, Any],
    archived: bool,
    diff: dict[str, Any],
    actor: Actor,
    changed_by: str | None,
) -> Definition | None:
    now = engines.current().database_now(connection)
    timing = {"schedule", "enabled", "archived"} & set(diff)
    values: dict[str, Any] = {
        "payload": merged["payload"],
        "schedule": merged["schedule"],
        "enabled": merged["enabled"],
        "catch_up": merged["catch_up"],
        "options": merged["options"],
        "version": current.version + 1,
        "updated_at": func.now(),
    }
    if "archived" in diff:
        values["archived_at"] = now if archived else None
    if timing:
        values["next_run_at"] = _next_run(merged["schedule"], merged["enabled"], archived, now)
    moved = connection.execute(
        sql_update(definitions)
        .where(definitions.c.id == current.id, definitions.c.version == current.version)
        .values(**values)
    )
    if moved.rowcount != 1:
        return None  # another update came first: read again, apply again
    changed = _definition(_row(connection, current.tenant, current.name))
    _log(connection, changed, diff, actor=actor, changed_by=changed_by)
    return changed


# -- reading ------------------------------------------------------------------------------


def get(tenant: str, name: str) -> Definition | None:
    """The tenant's definition of that name (archived ones too), or None."""
    with engine().connect() as connection:
        row = _row(connection, tenant, name)
    return None if row is None else _definition(row)


def list_(tenant: str, *, include_archived: bool = False) -> list[Definition]:
    """The tenant's definitions by name (archived ones only when asked)."""
    query = select(definitions).where(definitions.c.tenant == tenant)
    if not include_archived:
        query = query.where(definitions.c.archived_at.is_(None))
    with engine().connect() as connection:
        rows = connection.execute(query.order_by(definitions.c.name)).mappings().all()
    return [_definition(row) for row in rows]


def changes_of(definition_id: uuid.UUID) -> list[dict[str, Any]]:
    """The change log of a definition, oldest first."""
    query = (
        select(definition_changes)
        .where(definition_changes.c.definition_id == definition_id)
        .order_by(definition_changes.c.id)
    )
    with engine().connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [{**row, "created_at": aware(row["created_at"])} for row in rows]


# -- running ------------------------------------------------------------------------------


def run(
    tenant: str,
    name: str,
    *,
    scheduled_for: datetime | None,
    trigger: Trigger,
    created_by: str | None,
) -> uuid.UUID | None:
    """Create a job from the definition, through its job type's ``apply_async`` (payload
    validated again, redacted message reprs, ledger row before publish), linked to the
    definition and its current version, with its run options; ``scheduled_for`` names
    the firing of a scheduled run (None for a run by hand).

    Returns the job's id, or None when that firing has its job already (made by another
    beat, or an earlier try of this one), or when a scheduled firing meets its definition
    disabled: nothing is published then.

    Raises:
        DefinitionNotFound: (a LookupError) no such definition in this tenant.
        DefinitionArchived: an archived definition does not run (a disabled one does,
            by hand).
        InvalidPayload: the stored payload no longer passes the type's model (the type
            changed since it was saved); nothing written.
    """
    from app.ledger.operations.actions import registered_task

    definition = get(tenant, name)
    if definition is None:
        raise DefinitionNotFound(tenant, name)
    if definition.archived:
        raise DefinitionArchived(tenant, name)
    if scheduled_for is not None and not definition.enabled:
        return None  # disabled between the beat's look (due) and this firing: not run
    task = registered_task(definition.type)
    if task is None:
        raise InvalidPayload(definition.type, {"type": f"{definition.type!r} is not a job type"})
    options = dict(definition.options)
    if scheduled_for is not None and definition.schedule is not None:
        options.setdefault("expires", expiry(definition.schedule, _utc(scheduled_for)))
    if trigger == "beat":
        trigger = task.schedule_trigger  # a type that is a scheduled form names its firings
    result = task.apply_async(
        kwargs=dict(definition.payload),
        tenant=tenant,
        trigger=trigger,
        created_by=created_by,
        definition_id=definition.id,
        definition_version=definition.version,
        scheduled_for=None if scheduled_for is None else _utc(scheduled_for),
        **options,
    )
    return None if result is None else uuid.UUID(str(result.id))


def expiry(schedule: dict[str, Any], scheduled_for: datetime) -> float:
    """Seconds a scheduled run's message may wait for a worker: one period of its
    schedule (the next firing takes over then), at least :data:`MIN_EXPIRY` (a busy worker
    needs a moment) and at most :data:`MAX_EXPIRY` (a daily purge nobody ran by then is
    better left to the next day). A run that expires is ``canceled`` in the ledger
    ("expired before a worker ran it") instead of piling up behind a stopped worker."""
    period = (schedules.next_after(schedule, scheduled_for) - scheduled_for).total_seconds()
    return min(max(period, MIN_EXPIRY), MAX_EXPIRY)


def due(
    now: datetime, *, watched_since: datetime | None = None
) -> list[tuple[Definition, list[datetime]]]:
    """The definitions to fire at ``now`` (enabled, scheduled, not archived, next firing
    at or before ``now``), each with the firings to make, oldest first:

    - ``skip``: firings missed while no beat was active are not made (an empty list:
      move the definition past them with :func:`pass_over`).
    - ``once``: one run stands for all the firings missed while no beat was active (made
      for the latest of them).

    ``watched_since``: a beat was active and looked at that moment (its previous tick).
    The firings after it fell due while a beat ran, so none of them is missed: all are
    made (a tick that came a little late, or a definition firing more often than the
    beat ticks, loses none); the catch-up rule applies to the older ones only.

    After firing, the scheduler moves the definition on with :func:`advance`
    (``fired_for`` the last firing made, ``next_run_at`` = :func:`~app.ledger.rules.
    schedules.next_after` of it).
    """
    now = _utc(now)
    query = (
        select(definitions)
        .where(
            definitions.c.enabled.is_(True),
            definitions.c.archived_at.is_(None),
            definitions.c.schedule.is_not(None),
            definitions.c.next_run_at.is_not(None),
            definitions.c.next_run_at <= now,
        )
        .order_by(definitions.c.next_run_at, definitions.c.id)
    )
    with engine().connect() as connection:
        rows = connection.execute(query).mappings().all()
    found = []
    for row in rows:
        definition = _definition(row)
        if definition.schedule is None or definition.next_run_at is None:
            continue  # a JSON null stored as such
        try:
            latest = _missed_and_latest(definition.schedule, definition.next_run_at, now)[1]
            watched = (
                []
                if watched_since is None
                else _watched(definition.schedule, definition.next_run_at, _utc(watched_since), now)
            )
            if watched:
                older = None
                if definition.next_run_at < watched[0]:
                    before = watched[0] - timedelta(microseconds=1)
                    older = _missed_and_latest(definition.schedule, definition.next_run_at, before)[
                        1
                    ]
                once = definition.catch_up == "once" and older is not None
                found.append((definition, [older, *watched] if once and older else watched))
                continue
        except schedules.InvalidSchedule as error:
            # valid when saved, not any more (a time zone gone from the system's tz data):
            # the others still fire; this one waits for an operator's edit
            log.error("definition %r of tenant %r not fired: %s", row["name"], row["tenant"], error)
            continue
        # Nothing watched these firings: all fell due while no beat was active.
        found.append((definition, [latest] if definition.catch_up == "once" else []))
    return found


def pass_over(definition: Definition, now: datetime) -> bool:
    """Move a due definition past the firings it missed, making none of them (catch-up
    ``skip`` when no beat was active as they fell due): the next run is the first firing
    after ``now``. Guarded like :func:`advance`; returns whether it moved."""
    if definition.schedule is None or definition.next_run_at is None:
        return False
    now = _utc(now)
    latest = _missed_and_latest(definition.schedule, definition.next_run_at, now)[1]
    return advance(definition.id, latest, schedules.next_after(definition.schedule, latest))


def advance(definition_id: uuid.UUID, fired_for: datetime, next_run_at: datetime | None) -> bool:
    """Record that the firing ``fired_for`` was made and the next is ``next_run_at``.

    Guarded: only a definition not yet moved past ``fired_for`` (``last_fired_for``
    before it) whose next firing is still at or before it moves, so two beats cannot
    move it twice, and an edit made meanwhile (which recomputed ``next_run_at`` from
    its own now, or disabled or archived the definition) is not overwritten. Returns
    whether it moved.
    """
    fired_for = _utc(fired_for)
    statement = (
        sql_update(definitions)
        .where(
            definitions.c.id == definition_id,
            or_(definitions.c.last_fired_for.is_(None), definitions.c.last_fired_for < fired_for),
            definitions.c.next_run_at.is_not(None),
            definitions.c.next_run_at <= fired_for,
        )
        .values(
            last_fired_for=fired_for,
            next_run_at=None if next_run_at is None else _utc(next_run_at),
        )
    )
    moved = in_transaction(
        lambda connection: connection.execute(statement).rowcount,
        f"definition {definition_id} advanced",
    )
    return bool(moved == 1)


def _watched(
    schedule: dict[str, Any], first: datetime, since: datetime, now: datetime
) -> list[datetime]:
    """The firings from ``first`` (a firing) on that are after ``since`` and at or before
    ``now``, oldest first."""
    start = first if first > since else schedules.next_after(schedule, since)
    return schedules.firings_between(schedule, start, now) if start <= now else []


def _missed_and_latest(
    schedule: dict[str, Any], first: datetime, now: datetime
) -> tuple[datetime | None, datetime]:
    """The last firing before the latest one (None when only one is due) and the latest
    firing at or before ``now``, from ``first`` (a firing, at or before ``now``)."""
    parsed = schedules.parse(schedule)
    if "every" in parsed:  # closed form: a firing is a multiple of the interval
        latest = schedules.next_after(parsed, now) - timedelta(seconds=parsed["every"])
        previous = latest - timedelta(seconds=parsed["every"])
        return (previous if previous >= first else None), max(latest, first)
    missed, latest = None, first
    for _ in range(MAX_CRON_STEPS):
        following = schedules.next_after(parsed, latest)
        if following > now:
            return missed, latest
        missed, latest = latest, following
    # unfired for very long: missed for sure; the latest firing is looked for over the
    # last day (a schedule this frequent fires within one)
    recent = _last_cron_before(parsed, now)
    return first, recent if recent is not None else latest


def _last_cron_before(schedule: dict[str, Any], now: datetime) -> datetime | None:
    latest = schedules.next_after(schedule, now - timedelta(days=1))
    if latest > now:
        return None
    while (following := schedules.next_after(schedule, latest)) <= now:
        latest = following
    return latest


def _utc(moment: datetime) -> datetime:
    """Aware UTC (naive means UTC): the form stored and compared on every engine."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- helpers ------------------------------------------------------------------------------


def _check_tenant(tenant: Any, job_type: Any) -> None:
    if not isinstance(tenant, str) or not TENANT.match(tenant):
        raise InvalidPayload(str(job_type), {"tenant": f"must match {TENANT.pattern}"})


def _checked(tenant: str, job_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a definition validated and normalised (the stored form).

    Raises:
        InvalidPayload: naming every offending field.
    """
    from app.ledger.operations.actions import registered_task
    from app.ledger.runtime.task import JobTask

    task = registered_task(job_type) if isinstance(job_type, str) else None
    if not isinstance(task, JobTask):
        raise InvalidPayload(str(job_type), {"type": f"{job_type!r} is not a job type"})
    problems: dict[str, str] = {}
    payload = values["payload"]
    if not isinstance(payload, dict):
        problems["payload"] = "must be an object of the job type's payload fields"
    else:
        refused = dict(unstorable_fields(payload))
        problems.update({f"payload.{field}": problem for field, problem in refused.items()})
        secret = {k: NOT_KEPT for k, v in payload.items() if _holds_secret(k, v)}
        problems.update({f"payload.{field}": problem for field, problem in secret.items()})
        if not refused and not secret:
            try:
                validated = task.validate_payload((), dict(payload), tenant=tenant)
                task.job_document(validated, {"tenant": tenant})
            except InvalidPayload as error:
                problems.update({f"payload.{f}": p for f, p in error.fields.items()})
    schedule = values["schedule"]
    if schedule is not None:
        try:
            schedule = schedules.parse(schedule)
        except schedules.InvalidSchedule as error:
            problems[error.field] = error.problem
    if not isinstance(values["enabled"], bool):
        problems["enabled"] = f"must be true or false, got {values['enabled']!r}"
    if values["catch_up"] not in CATCH_UP:
        problems["catch_up"] = f"must be one of {', '.join(CATCH_UP)}, got {values['catch_up']!r}"
    options = values["options"]
    if not isinstance(options, dict):
        problems["options"] = f"must be an object of run options ({', '.join(RUN_OPTIONS)})"
    else:
        problems.update(_option_problems(task, options))
    if problems:
        raise InvalidPayload(job_type, problems)
    return {**values, "schedule": schedule, "options": dict(options)}


def _holds_secret(key: str, value: Any) -> bool:
    """Whether the ledger's redaction would mask (part of) this payload field."""
    return bool(redact_data({key: value}) != {key: value})


def _option_problems(task: Any, options: dict[str, Any]) -> dict[str, str]:
    problems = {
        f"options.{key}": f"is not a run option ({', '.join(RUN_OPTIONS)})"
        for key in options
        if key not in RUN_OPTIONS
    }
    # the rules each run's apply_async applies (JobTask.route, .prioritize,
    # .checked_retry_policy), so that a saved option never fails a firing
    queue = options.get("queue")
    if queue is not None and not (isinstance(queue, str) and QUEUE_NAME.match(queue)):
        problems["options.queue"] = f"must be a queue name ({QUEUE_NAME.pattern})"
    if options.get("priority") is not None:
        try:
            task.prioritize({"priority": options["priority"]})
        except InvalidPayload as error:
            problems.update({f"options.{f}": p for f, p in error.fields.items()})
    if options.get("retry_policy") is not None:
        try:
            task.checked_retry_policy(options["retry_policy"])
        except InvalidPayload as error:
            problems.update({f"options.{f}": p for f, p in error.fields.items()})
    limits = {key: options[key] for key in ("time_limit", "soft_time_limit") if key in options}
    if limits:
        try:
            task.check_time_limits(dict(limits))
        except InvalidPayload as error:
            problems.update({f"options.{f}": p for f, p in error.fields.items()})
    return problems


def _next_run(
    schedule: dict[str, Any] | None, enabled: bool, archived: bool, now: datetime
) -> datetime | None:
    if schedule is None or not enabled or archived:
        return None
    return schedules.next_after(schedule, now)


def _select(tenant: str, name: str) -> Any:
    return select(definitions).where(definitions.c.tenant == tenant, definitions.c.name == name)


def _row(connection: Connection, tenant: str, name: str) -> Any:
    return connection.execute(_select(tenant, name)).mappings().first()


def _definition(row: Any) -> Definition:
    def moment(value: Any) -> datetime | None:
        return None if value is None else aware(value)

    return Definition(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        type=row["type"],
        payload=dict(row["payload"]),
        schedule=None if row["schedule"] is None else dict(row["schedule"]),
        enabled=bool(row["enabled"]),
        catch_up=row["catch_up"],
        options=dict(row["options"] or {}),
        version=row["version"],
        archived_at=moment(row["archived_at"]),
        next_run_at=moment(row["next_run_at"]),
        last_fired_for=moment(row["last_fired_for"]),
        created_by=row["created_by"],
        created_at=aware(row["created_at"]),
        updated_at=aware(row["updated_at"]),
    )


def _log(
    connection: Connection,
    definition: Definition,
    changes: dict[str, Any],
    *,
    actor: Actor,
    changed_by: str | None,
) -> None:
    connection.execute(
        definition_changes.insert().values(
            definition_id=definition.id,
            version=definition.version,
            actor=actor,
            changed_by=changed_by,
            changes=changes,
        )
    )
