"""Which queue each job type goes to, and which queues a default worker consumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from app import queues
from app.celery import app
from app.config import Settings, settings


@pytest.fixture
def overridden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("JOBLEDGER_QUEUES", '{"export": "bulk", "example.echo": "fast"}')
    settings.cache_clear()
    yield
    monkeypatch.delenv("JOBLEDGER_QUEUES")
    settings.cache_clear()


def test_each_family_has_its_queue_and_other_types_the_default_one() -> None:
    app.loader.import_default_modules()
    assert queues.queue_for("import") == "import"
    assert queues.queue_for("export") == "export"
    assert queues.queue_for("sync_and_suggest") == "sync"
    assert queues.queue_for("purge") == "maintenance"
    assert queues.queue_for("example.echo") == queues.DEFAULT_QUEUE == "celery"


def test_the_setting_overrides_a_types_queue_and_adds_it_to_the_default_workers(
    overridden: None,
) -> None:
    assert queues.queue_for("export") == "bulk"
    assert queues.queue_for("example.echo") == "fast"
    assert queues.queue_for("import") == "import"
    assert {"bulk", "fast", "export", "celery"} <= set(queues.queue_names())


def test_the_router_sends_a_job_type_to_its_queue_and_leaves_plain_tasks_alone(
    overridden: None,
) -> None:
    assert queues.route_task("export", (), {}, {}) == {"queue": "bulk"}
    assert queues.route_task("celery.ping", (), {}, {}) is None


def test_every_queue_is_a_celery_queue_of_its_own_name() -> None:
    made = {queue.name: queue for queue in queues.task_queues()}
    assert list(made) == queues.queue_names()
    assert all(queue.routing_key == name for name, queue in made.items())
    assert set(made) <= set(app.amqp.queues)


def test_redis_keys_name_every_priority_level_of_each_queue() -> None:
    keys = queues.redis_keys(["export"])
    assert keys[0] == "export"
    assert "export\x06\x169" in keys
    assert len(keys) == 10


def test_a_queue_name_that_is_not_one_is_refused_naming_the_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_QUEUES", '{"export": "two words"}')
    with pytest.raises(ValidationError, match=r"JOBLEDGER_QUEUES\['export'\]"):
        Settings()


def test_the_users_priority_is_mapped_onto_each_brokers_direction() -> None:
    # RabbitMQ delivers the highest number first, kombu's Redis emulation the lowest
    assert [queues.broker_priority(p, "amqp://guest@h//") for p in (0, 5, 9)] == [0, 5, 9]
    assert [queues.broker_priority(p, "redis://h:6379/0") for p in (0, 5, 9)] == [9, 4, 0]


def test_redis_gets_a_list_per_priority_level_and_other_brokers_nothing() -> None:
    assert queues.transport_options("redis://h:6379/0") == {"priority_steps": list(range(10))}
    assert queues.transport_options("amqp://guest@h//") == {}


def test_a_types_default_priority_comes_from_the_setting_else_five(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_PRIORITIES", '{"export": 2}')
    settings.cache_clear()
    try:
        assert (queues.priority_for("export"), queues.priority_for("import")) == (2, 5)
    finally:
        monkeypatch.delenv("JOBLEDGER_PRIORITIES")
        settings.cache_clear()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("JOBLEDGER_PRIORITIES", '{"export": 10}', "priorities.export"),
        ("JOBLEDGER_RATE_LIMITS", '{"export": "fast"}', r"JOBLEDGER_RATE_LIMITS\['export'\]"),
        ("JOBLEDGER_RETRY_POLICIES", '{"sync": {"max_attempts": 0}}', "max_attempts"),
    ],
)
def test_run_control_settings_out_of_range_are_refused_naming_the_entry(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=named):
        Settings()
