"""Bad payloads of the typed tasks are refused at ``delay()``, naming the field, and
nothing reaches the ledger or the broker. No worker needed: refusal happens in the
producer."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from app.exceptions import InvalidPayload
from app.queues import redis_keys
from tasks import export_data, import_data, suggest, sync, sync_and_suggest
from tests.support.ledger import count

CASES: list[tuple[Any, tuple[Any, ...], dict[str, Any], str]] = [
    # (task, args, kwargs, the field the error must name)
    (import_data, (), {"source": "a.csv", "dataset": "d", "format": "xml"}, "format"),
    (import_data, (), {"source": "a.csv"}, "dataset"),
    (import_data, (), {"source": "data.txt", "dataset": "d"}, "format"),
    (import_data, (), {"source": "ftp://host/a.csv", "dataset": "d"}, "source"),
    (import_data, (), {"source": "a.csv", "dataset": "../etc"}, "dataset"),
    (import_data, (), {"source": "a.csv", "dataset": "d", "columns": {"x": "money"}}, "columns.x"),
    (import_data, (), {"source": "a.csv", "dataset": "d", "batch_size": 0}, "batch_size"),
    (import_data, (), {"source": "a.csv", "dataset": "d", "sheet": 2}, "sheet"),
    (export_data, (), {"dataset": "d", "format": "pdf"}, "format"),
    (export_data, (), {}, "dataset"),
    (export_data, (), {"dataset": "ledger:jobs; drop table jobs"}, "dataset"),
    (sync, ("b",), {}, "source"),
    (sync, ("b", "postgresql://bank:secret@db/bank#table=tx"), {}, "source.database.url"),
    (sync, ("b", {"url": "sqlite:///x.db"}), {}, "source.database.url"),
    (sync, ("b", {"connection": "bank"}), {}, "source.database.table"),
    (sync, ("b", {"connection": "nope", "table": "tx"}), {}, "source.database.connection"),
    (sync, ("b", "database://bank/other_tx"), {}, "source.database.table"),
    (
        sync,
        ("b", {"url": "sqlite:///x.db", "query": "DELETE FROM tx"}),
        {},
        "source.database.query",
    ),
    (sync, ("b", {"url": "sqlite:///x.db", "table": "tx; --"}), {}, "source.database.table"),
    (sync, ("b", "export.txt"), {}, "source.file.format"),
    (sync, ("", "bank.csv"), {}, "budget_id"),
    (suggest, (), {}, "budget_id"),
    (sync_and_suggest, ("b",), {}, "source"),
    (sync_and_suggest, ("b", "bank.csv"), {"full_resync": "sometimes"}, "full_resync"),
]


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "field"),
    CASES,
    ids=[f"{case[0].name}-{case[3]}-{i}" for i, case in enumerate(CASES)],
)
def test_bad_payload_is_refused_at_delay_naming_the_field(
    task: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    field: str,
    redis_client: redis.Redis,
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        task.delay(*args, **kwargs)

    assert field in refused.value.fields, refused.value.fields
    assert f"field {field!r}" in str(refused.value)
    assert count("SELECT count(*) FROM jobs") == 0
    assert count("SELECT count(*) FROM job_steps") == 0
    assert not any(redis_client.llen(key) for key in redis_keys())
