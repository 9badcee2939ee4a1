"""When a definition fires: a cron expression in a time zone, or an interval (pure).

A schedule is a JSON document, one of::

    {"cron": "*/5 * * * *", "timezone": "Europe/Paris"}   # timezone defaults to UTC
    {"every": 30}                                          # seconds, >= 1

:func:`parse` checks one and returns it normalised (the form stored), raising
:class:`InvalidSchedule` naming the field (``schedule.cron``, ``schedule.timezone``,
``schedule.every``); :func:`next_after` gives the next firing strictly after a moment
(as an aware UTC datetime); :func:`describe` says it in words.

Cron expressions are evaluated by `cronsim <https://pypi.org/project/cronsim/>`_ in the
schedule's own time zone (:mod:`zoneinfo`). Chosen over ``croniter``: cronsim is small,
typed, has no dependencies, and is what Healthchecks.io evaluates millions of cron
schedules with, with documented daylight-saving rules (a time skipped by a spring-forward
change fires at the first valid moment after it; a time repeated by a fall-back change
fires once, at its first occurrence) — the behaviour cron itself has. croniter's future
was uncertain in 2024 (it was announced for archival before a new maintainer took it on)
and its DST handling has had a long tail of bug reports.

Intervals are aligned to the Unix epoch (``every: 60`` fires at every whole minute), so
the firings of an interval schedule are the same moments whichever beat computes them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

#: The longest interval accepted (a year); longer ones are cron schedules.
MAX_EVERY = 366 * 24 * 3600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidSchedule(ValueError):
    """A schedule that cannot be used; ``field`` names the offending part."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def parse(schedule: Any) -> dict[str, Any]:
    """The schedule checked and normalised (``timezone`` filled in for cron).

    Raises:
        InvalidSchedule: naming ``schedule``, ``schedule.cron``, ``schedule.timezone``
            or ``schedule.every``.
    """
    if not isinstance(schedule, dict):
        raise InvalidSchedule(
            "schedule", 'must be {"cron": "…", "timezone": "…"} or {"every": seconds}'
        )
    unknown = sorted(set(schedule) - {"cron", "timezone", "every"})
    if unknown:
        raise InvalidSchedule(f"schedule.{unknown[0]}", "is not a schedule field")
    if "cron" in schedule and "every" in schedule:
        raise InvalidSchedule("schedule", "give either cron or every, not both")
    if "every" in schedule:
        if "timezone" in schedule:
            raise InvalidSchedule("schedule.timezone", "applies to cron schedules only")
        every = schedule["every"]
        if isinstance(every, bool) or not isinstance(every, int):
            raise InvalidSchedule("schedule.every", f"must be whole seconds, got {every!r}")
        if not 1 <= every <= MAX_EVERY:
            raise InvalidSchedule("schedule.every", f"must be 1 to {MAX_EVERY} seconds")
        return {"every": every}
    if "cron" not in schedule:
        raise InvalidSchedule("schedule", 'needs "cron" or "every"')
    expression = schedule["cron"]
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidSchedule("schedule.cron", "must be a cron expression (5 fields)")
    expression = " ".join(expression.split())
    if len(expression.split()) != 5:
        # cronsim also reads six fields, the first one seconds: "0 3 * * * *" would fire
        # at minute 3 of every hour, not at 03:00
        raise InvalidSchedule(
            "schedule.cron",
            f"{expression!r}: give five fields (minute hour day-of-month month day-of-week)",
        )
    zone_name = schedule.get("timezone", "UTC")
    zone = _zone(zone_name)
    try:
        CronSim(expression, datetime.now(zone))
    except CronSimError as error:
        raise InvalidSchedule("schedule.cron", f"{expression!r}: {error}") from None
    return {"cron": expression, "timezone": zone_name}


def next_after(schedule: dict[str, Any], moment: datetime) -> datetime:
    """The first firing of ``schedule`` strictly after ``moment`` (aware; naive means
    UTC), as an aware UTC datetime."""
    schedule = parse(schedule)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if "every" in schedule:
        every = schedule["every"]
        elapsed = (moment - EPOCH) // timedelta(seconds=1)
        return EPOCH + timedelta(seconds=(elapsed // every + 1) * every)
    zone = _zone(schedule["timezone"])
    local = moment.astimezone(zone)
    following: datetime = next(CronSim(schedule["cron"], local))
    return following.astimezone(UTC)


def firings_between(schedule: dict[str, Any], first: datetime, now: datetime) -> list[datetime]:
    """The firings from ``first`` (itself a firing) up to and including ``now``, oldest
    first; at most 1000 (the latest ones), a bound for a schedule left unfired for long."""
    found: list[datetime] = []
    moment = first
    while moment <= now:
        found.append(moment)
        if len(found) > 1000:
            found.pop(0)
        moment = next_after(schedule, moment)
    return found


def describe(schedule: dict[str, Any] | None) -> str:
    """The schedule in words: ``every 30 s``, ``cron */5 * * * * (Europe/Paris)``."""
    if schedule is None:
        return "not scheduled"
    schedule = parse(schedule)
    if "every" in schedule:
        return f"every {schedule['every']} s"
    return f"cron {schedule['cron']} ({schedule['timezone']})"


def _zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise InvalidSchedule("schedule.timezone", f"must be an IANA time zone, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            "schedule.timezone", f"{name!r} is not an IANA time zone (e.g. Europe/Paris)"
        ) from None
