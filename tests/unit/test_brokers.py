"""Per-broker settings (app/brokers.py): pure functions of the broker URL."""

from __future__ import annotations

import pytest

from app import brokers


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://cache.example:6380/0", "redis"),
        ("amqp://guest:guest@127.0.0.1:5672/jl", "rabbitmq"),
        ("amqps://user:secret@mq.example:5671/prod", "rabbitmq"),
        ("pyamqp://guest@localhost//", "rabbitmq"),
        ("AMQP://guest@localhost//", "rabbitmq"),
        ("filesystem://", "filesystem"),
        ("sqla+sqlite:///broker.db", "other"),
    ],
)
def test_the_kind_of_broker_is_read_from_the_url_scheme(url: str, kind: str) -> None:
    assert brokers.kind(url) == kind


def test_rabbitmq_queues_are_priority_queues_of_ten_levels() -> None:
    arguments = brokers.queue_arguments("amqp://guest:guest@127.0.0.1:5672/jl")
    assert arguments == {"x-max-priority": 9}


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "filesystem://"])
def test_other_brokers_declare_queues_without_arguments(url: str) -> None:
    assert brokers.queue_arguments(url) == {}


def test_rabbitmq_publishes_with_confirms_and_without_a_visibility_timeout() -> None:
    options = brokers.transport_options("amqp://guest:guest@127.0.0.1:5672/jl")
    assert options == {"confirm_publish": True}


def test_redis_keeps_its_visibility_timeout_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_VISIBILITY_TIMEOUT", "7200")
    brokers.settings.cache_clear()
    try:
        options = brokers.transport_options("redis://127.0.0.1:6379/0")
    finally:
        monkeypatch.undo()
        brokers.settings.cache_clear()
    assert options == {"visibility_timeout": 7200}
