"""The libpq parameters that bound a silent network (app/db.py, ``network_parameters``):
derived from ``JOBLEDGER_DB_NETWORK_TIMEOUT``, only for PostgreSQL over libpq."""

from __future__ import annotations

import pytest

from app.db import network_parameters


def test_thirty_seconds_bound_connecting_sending_and_waiting() -> None:
    assert network_parameters("postgresql://u@h/db", 30) == {
        "connect_timeout": 30,
        "tcp_user_timeout": 30_000,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
    }


def test_a_fraction_of_a_second_rounds_up_where_libpq_takes_whole_seconds() -> None:
    parameters = network_parameters("postgresql+psycopg://u@h/db", 2.5)
    assert parameters["connect_timeout"] == 3
    assert parameters["tcp_user_timeout"] == 2500
    assert parameters["keepalives_idle"] == parameters["keepalives_interval"] == 1


def test_keepalives_find_an_idle_connection_dead_within_the_timeout() -> None:
    for seconds in (1, 2, 5, 9, 30, 300):
        p = network_parameters("postgresql://u@h/db", seconds)
        assert p["keepalives_idle"] + p["keepalives_interval"] * p["keepalives_count"] <= max(
            seconds, 4
        )


@pytest.mark.parametrize(
    ("url", "seconds"),
    [
        ("postgresql://u@h/db", 0),
        ("sqlite:///var/ledger.db", 30),
        ("postgresql+asyncpg://u@h/db", 30),
        ("mysql+pymysql://u@h/db", 30),
    ],
)
def test_none_when_switched_off_or_not_libpq(url: str, seconds: float) -> None:
    assert network_parameters(url, seconds) == {}


def test_the_setting_is_read_when_no_seconds_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import settings

    monkeypatch.setenv("JOBLEDGER_DB_NETWORK_TIMEOUT", "9")
    settings.cache_clear()
    try:
        assert network_parameters("postgresql://u@h/db")["tcp_user_timeout"] == 9000
    finally:
        monkeypatch.undo()
        settings.cache_clear()
