"""The beat lease on both engines: claimed by one holder at a time, renewed by its holder,
taken over only once expired (rows back-dated, no waiting for the clock), handed back on
a clean stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app import db
from app.ledger import engines
from app.ledger.engines.lease_queries import beat_leases
from app.ledger.runtime.beat import LEASE_NAME, Lease, holder_name
from tests.support.engines import KINDS, ledger_on


@pytest.fixture(params=KINDS, autouse=True)
def engine_kind(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test runs once per engine (tests/support/engines.py), with no lease held."""
    with ledger_on(request.param, tmp_path, monkeypatch) as kind:
        with db.engine().begin() as connection:
            connection.execute(beat_leases.delete())
        yield kind


def back_date(seconds: float) -> None:
    """Move the lease's expiry ``seconds`` into the past (as if its holder stopped
    renewing that long ago)."""
    with db.engine().connect() as connection:
        now = engines.current().database_now(connection)
    with db.engine().begin() as connection:
        connection.execute(
            update(beat_leases)
            .where(beat_leases.c.name == LEASE_NAME)
            .values(expires_at=now - timedelta(seconds=seconds))
        )


def test_the_first_claim_wins_and_another_holder_is_refused_while_it_lasts() -> None:
    first, second = Lease(LEASE_NAME, "a", 30), Lease(LEASE_NAME, "b", 30)

    assert first.hold() is True
    assert second.hold() is False
    state = first.state()
    assert state is not None
    assert state.holder == "a"
    assert second.hold() is False  # still refused: nothing changed
    assert first.state() == state


def test_the_holder_renews_its_lease_keeping_the_time_it_took_it() -> None:
    lease = Lease(LEASE_NAME, "a", 30)
    assert lease.hold()
    taken = lease.state()
    assert taken is not None
    back_date(-5)  # 5 s left: a renewal gives 30 s again

    assert lease.hold() is True
    renewed = lease.state()
    assert renewed is not None
    assert renewed.acquired_at == taken.acquired_at
    assert renewed.expires_at - renewed.acquired_at >= timedelta(seconds=29)


def test_an_expired_lease_is_taken_over_and_its_old_holder_stands_by() -> None:
    old, new = Lease(LEASE_NAME, "old", 30), Lease(LEASE_NAME, "new", 30)
    assert old.hold()
    back_date(1)  # expired a second ago: the old holder stopped renewing

    assert new.hold() is True
    state = new.state()
    assert state is not None
    assert state.holder == "new"
    assert old.hold() is False  # back from a pause, it is a standby now
    assert new.hold() is True


def test_a_lease_just_short_of_expiry_is_not_taken_over() -> None:
    old, new = Lease(LEASE_NAME, "old", 30), Lease(LEASE_NAME, "new", 30)
    assert old.hold()
    back_date(-1)  # one second left

    assert new.hold() is False


def test_a_released_lease_is_taken_at_once_and_a_release_by_a_non_holder_changes_nothing() -> None:
    first, second = Lease(LEASE_NAME, "a", 30), Lease(LEASE_NAME, "b", 30)
    assert first.hold()
    second.release()  # not the holder: no effect
    assert second.hold() is False

    first.release()

    assert second.hold() is True
    assert first.hold() is False


def test_holders_claiming_at_the_same_moment_get_one_lease(engine_kind: str) -> None:
    if engine_kind == "sqlite":
        pytest.skip("one beat on SQLite: its writers queue on one file lock anyway")
    leases = [Lease(LEASE_NAME, holder_name(), 30) for _ in range(8)]
    results: list[bool] = []
    start = threading.Barrier(len(leases))

    def claim(lease: Lease) -> None:
        start.wait()
        results.append(lease.hold())

    threads = [threading.Thread(target=claim, args=(lease,)) for lease in leases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == [False] * 7 + [True]
