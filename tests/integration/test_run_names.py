"""Run names ``YYYYMMDDhhmmss[_n]`` recorded in the ledger: unique under concurrency."""

from __future__ import annotations

import uuid
from collections import Counter

from app.ledger import transitions as ledger
from app.ledger.rules.naming import NAME_PATTERN
from tests.support import ledger as read
from tests.support.races import at_once


def test_fifty_concurrent_producers_get_fifty_distinct_names() -> None:
    ended = at_once(
        lambda: ledger.record_queued(
            ledger.NewJob(id=uuid.uuid4(), type="example.echo", payload={"value": 1})
        ),
        50,
        timeout=30,
    )
    errors = [result for result in ended if isinstance(result, BaseException)]

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
