"""The input rules of :mod:`app.inputs`, as pure functions (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.inputs import (
    MAX_PAGE,
    NOT_FINITE_PROBLEM,
    NUL_PROBLEM,
    SURROGATE_PROBLEM,
    ago,
    check_page,
    refuse_unstorable,
    unstorable_fields,
    utc_moment,
)


def test_unstorable_fields_names_every_string_key_and_number_postgresql_refuses() -> None:
    document = {
        "ok": "fine ✓",
        "source": "a\x00.csv",
        "rows": [{"name": "x"}, {"name": "y\ud800"}],
        "bad\x00key": 1,
        "\udc00": 1,
        "score": [1.5, float("nan"), float("-inf")],
    }

    assert list(unstorable_fields(document)) == [
        ("source", NUL_PROBLEM),
        ("rows.1.name", SURROGATE_PROBLEM),
        ("bad\x00key", NUL_PROBLEM),
        ("\ufffd", SURROGATE_PROBLEM),
        ("score.1", NOT_FINITE_PROBLEM),
        ("score.2", NOT_FINITE_PROBLEM),
    ]
    assert list(unstorable_fields("\x00")) == [("*", NUL_PROBLEM)]
    assert list(unstorable_fields({"n": 1, "f": 2.5, "t": ["a", None]})) == []


@pytest.mark.parametrize(
    ("text", "problem"), [("a\x00b", "NUL"), ("\ud800", "surrogate"), ("é\udfff", "surrogate")]
)
def test_refuse_unstorable_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        refuse_unstorable(text)


def test_refuse_unstorable_lets_ordinary_text_through() -> None:
    assert refuse_unstorable("budget-1 ✓ 😀") == "budget-1 ✓ 😀"


@pytest.mark.parametrize(
    "moment",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ],
)
def test_a_moment_outside_the_representable_utc_range_is_refused(moment: datetime) -> None:
    with pytest.raises(ValueError, match="out of range"):
        utc_moment(moment)


def test_a_moment_is_moved_to_utc_and_a_naive_one_taken_as_utc() -> None:
    east = datetime(2026, 11, 30, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    assert utc_moment(east) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert utc_moment(datetime(2026, 11, 30, 12, 0)).tzinfo is UTC


def test_ago_refuses_an_amount_that_reaches_before_year_one() -> None:
    assert ago(1, "days") < datetime.now(UTC)
    with pytest.raises(ValueError, match="out of range"):
        ago(10**9, "days")
    with pytest.raises(ValueError, match="out of range"):
        ago(10**20, "weeks")  # beyond timedelta's own range


def test_pages_are_bounded_so_the_offset_fits_a_bigint() -> None:
    assert check_page(MAX_PAGE) == MAX_PAGE
    assert (MAX_PAGE - 1) * 500 < 2**63
    for page in (0, MAX_PAGE + 1, 10**24):
        with pytest.raises(ValueError, match="page must be between"):
            check_page(page)
