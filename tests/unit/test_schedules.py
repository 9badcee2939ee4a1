"""Schedule rules (pure): cron in its time zone across daylight-saving changes, epoch-
aligned intervals, the words, and errors naming the field."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.ledger.rules.schedules import InvalidSchedule, describe, next_after, parse


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_cron_fires_in_its_time_zone() -> None:
    paris = {"cron": "0 9 * * *", "timezone": "Europe/Paris"}
    # winter: Paris is UTC+1
    assert next_after(paris, utc(2025, 1, 10, 12)) == utc(2025, 1, 11, 8)
    # summer: UTC+2
    assert next_after(paris, utc(2025, 7, 10, 12)) == utc(2025, 7, 11, 7)


def test_cron_across_the_spring_forward_change() -> None:
    # 2025-03-30 02:00 Paris does not exist (clocks jump to 03:00): 02:30 fires at the
    # first valid moment after it, 03:00 local = 01:00 UTC, then back to 02:30 next day
    at_half_past_two = {"cron": "30 2 * * *", "timezone": "Europe/Paris"}
    first = next_after(at_half_past_two, utc(2025, 3, 29, 12))
    assert first == utc(2025, 3, 30, 1)
    assert next_after(at_half_past_two, first) == utc(2025, 3, 31, 0, 30)


def test_cron_across_the_fall_back_change_fires_once() -> None:
    # 2025-10-26 02:30 Paris happens twice (CEST then CET): one firing, the first
    at_half_past_two = {"cron": "30 2 * * *", "timezone": "Europe/Paris"}
    first = next_after(at_half_past_two, utc(2025, 10, 25, 12))
    assert first == utc(2025, 10, 26, 0, 30)
    assert next_after(at_half_past_two, first) == utc(2025, 10, 27, 1, 30)


def test_hourly_cron_keeps_real_hours_across_a_change() -> None:
    hourly = {"cron": "0 * * * *", "timezone": "Europe/Paris"}
    moment, seen = utc(2025, 3, 29, 23, 30), []
    for _ in range(4):
        moment = next_after(hourly, moment)
        seen.append(moment)
    assert [b - a for a, b in itertools.pairwise(seen)] == [timedelta(hours=1)] * 3


def test_next_is_strictly_after_and_utc() -> None:
    every_five = {"cron": "*/5 * * * *"}
    assert next_after(every_five, utc(2025, 1, 1, 10, 5)) == utc(2025, 1, 1, 10, 10)
    assert next_after(every_five, utc(2025, 1, 1, 10, 5)).tzinfo == UTC
    naive = datetime(2025, 1, 1, 10, 7)  # naive means UTC
    assert next_after(every_five, naive) == utc(2025, 1, 1, 10, 10)


def test_intervals_are_aligned_to_the_epoch() -> None:
    assert next_after({"every": 30}, utc(2025, 1, 1, 10, 0, 0)) == utc(2025, 1, 1, 10, 0, 30)
    assert next_after({"every": 30}, utc(2025, 1, 1, 10, 0, 29)) == utc(2025, 1, 1, 10, 0, 30)
    assert next_after({"every": 60}, utc(2025, 1, 1, 10, 0, 30)) == utc(2025, 1, 1, 10, 1)
    # the same firing whichever moment inside a period asks
    start = next_after({"every": 7}, utc(2025, 1, 1))  # a firing of every 7 s
    asked = {next_after({"every": 7}, start + timedelta(seconds=s)) for s in range(7)}
    assert asked == {start + timedelta(seconds=7)}


def test_parse_normalises() -> None:
    assert parse({"cron": "  */5   * * * * "}) == {"cron": "*/5 * * * *", "timezone": "UTC"}
    assert parse({"every": 30}) == {"every": 30}


def test_describe() -> None:
    assert describe({"every": 30}) == "every 30 s"
    assert describe({"cron": "*/5 * * * *", "timezone": "Europe/Paris"}) == (
        "cron */5 * * * * (Europe/Paris)"
    )
    assert describe(None) == "not scheduled"


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"cron": "61 * * * *"}, "schedule.cron"),
        ({"cron": "* * *"}, "schedule.cron"),
        # six fields: cronsim would read a leading seconds field ("0 3 * * * *" would
        # fire at minute 3 of every hour, not at 03:00)
        ({"cron": "0 3 * * * *"}, "schedule.cron"),
        ({"cron": "*/10 * * * * *"}, "schedule.cron"),
        ({"cron": ""}, "schedule.cron"),
        ({"cron": 5}, "schedule.cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"cron": "* * * * *", "timezone": "../../etc/passwd"}, "schedule.timezone"),
        ({"every": 0}, "schedule.every"),
        ({"every": -5}, "schedule.every"),
        ({"every": 1.5}, "schedule.every"),
        ({"every": True}, "schedule.every"),
        ({"every": "30"}, "schedule.every"),
        ({"every": 30, "timezone": "UTC"}, "schedule.timezone"),
        ({"every": 30, "cron": "* * * * *"}, "schedule"),
        ({"evry": 30}, "schedule.evry"),
        ({}, "schedule"),
        ("*/5 * * * *", "schedule"),
    ],
)
def test_bad_schedules_name_the_field(schedule: object, field: str) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        parse(schedule)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ({"every": 60}, 60.0),
        ({"every": 5}, 30.0),  # at least 30 s: a busy worker needs a moment
        ({"cron": "*/10 * * * *", "timezone": "UTC"}, 600.0),
        ({"cron": "30 3 * * *", "timezone": "UTC"}, 12 * 3600.0),  # a daily run: at most 12 h
    ],
)
def test_a_scheduled_run_expires_after_one_period_within_bounds(
    schedule: dict[str, Any], seconds: float
) -> None:
    from app.ledger.definitions import expiry

    firing = next_after(schedule, datetime(2026, 3, 1, tzinfo=UTC))
    assert expiry(schedule, firing) == seconds
