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
