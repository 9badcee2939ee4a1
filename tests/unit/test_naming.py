"""Run names ``YYYYMMDDhhmmss[_n]``: pure formatting (uniqueness under concurrency:
tests/integration/test_run_names.py)."""

from __future__ import annotations

import pytest

from app.ledger.rules.naming import run_name


def test_first_job_of_a_second_has_the_bare_stamp() -> None:
    assert run_name("20261124093015", 0) == "20261124093015"


def test_later_jobs_of_the_same_second_get_suffixes() -> None:
    assert run_name("20261124093015", 1) == "20261124093015_1"
    assert run_name("20261124093015", 12) == "20261124093015_12"


@pytest.mark.parametrize("stamp", ["2026112409301", "2026-11-24 09", "abcdefghijklmn"])
def test_malformed_stamps_are_refused(stamp: str) -> None:
    with pytest.raises(ValueError, match="14 digits"):
        run_name(stamp, 0)
