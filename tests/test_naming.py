"""Run names ``YYYYMMDDhhmmss[_n]``: pure formatting, and uniqueness under concurrency."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from app.ledger import transitions as ledger
from app.ledger.rules.naming import NAME_PATTERN, run_name
from tests.support import ledger as read


def test_first_job_of_a_second_has_the_bare_stamp() -> None:
    assert run_name("20261124093015", 0) == "20261124093015"


def test_later_jobs_of_the_same_second_get_suffixes() -> None:
    assert run_name("20261124093015", 1) == "20261124093015_1"
    assert run_name("20261124093015", 12) == "20261124093015_12"


@pytest.mark.parametrize("stamp", ["2026112409301", "2026-11-24 09", "abcdefghijklmn"])
def test_malformed_stamps_are_refused(stamp: str) -> None:
    with pytest.raises(ValueError, match="14 digits"):
        run_name(stamp, 0)


def test_fifty_concurrent_producers_get_fifty_distinct_names() -> None:
    barrier = threading.Barrier(50)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            barrier.wait(10)
            ledger.record_queued(
                ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={"value": 1})
            )
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=produce) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    names = read.names()
    assert len(names) == 50
    assert len(set(names)) == 50
    assert all(NAME_PATTERN.match(name) for name in names)
    stamps = Counter(name.split("_")[0] for name in names)
    # they were created together: most share a second, so suffixes were needed
    assert stamps.most_common(1)[0][1] > 1


def test_names_are_recorded_with_the_job() -> None:
    job_id = uuid.uuid4()
    ledger.record_queued(ledger.NewJob(id=job_id, type="example.echo", payload={"value": 1}))
    row = read.job(job_id)
    assert row is not None
    assert NAME_PATTERN.match(row["name"])
