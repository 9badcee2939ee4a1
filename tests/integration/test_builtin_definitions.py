"""The built-in definitions: made from the settings when missing, never overwritten
(an operator's edit wins), made once by racing callers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from app.config import settings
from app.ledger import definitions
from app.ledger.operations.builtin_definitions import ensure_builtin_definitions


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(
        "JOBLEDGER_SCHEDULED_BUDGETS", '[{"budget_id": "b1", "source": "/d/b1.csv"}]'
    )
    monkeypatch.setenv("JOBLEDGER_SYNC_INTERVAL", "900")
    monkeypatch.setenv("JOBLEDGER_LIFELINE_INTERVAL", "45")
    monkeypatch.setenv("JOBLEDGER_PURGE_AT", "04:15")
    settings.cache_clear()
    yield
    monkeypatch.undo()
    settings.cache_clear()


def test_missing_built_ins_are_made_from_the_settings(budgets: None) -> None:
    made = {d.name: d for d in ensure_builtin_definitions()}

    assert set(made) == {"lifeline", "purge", "settle_counts", "sync_and_suggest:b1"}
    assert made["lifeline"].schedule == {"every": 45}
    assert made["purge"].schedule == {"cron": "15 4 * * *", "timezone": "UTC"}
    sync = made["sync_and_suggest:b1"]
    assert (sync.type, sync.schedule, sync.tenant) == (
        "sync_and_suggest",
        {"every": 900},
        "default",
    )
    assert all(d.enabled and d.next_run_at is not None for d in made.values())
    assert definitions.changes_of(made["purge"].id)[0]["changed_by"] == "beat"


def test_an_existing_definition_is_never_overwritten(
    budgets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_builtin_definitions()
    definitions.update(
        "default", "lifeline", {"schedule": {"every": 120}}, actor="cli", changed_by="ops"
    )
    definitions.update("default", "purge", {"archived": True}, actor="cli", changed_by="ops")
    monkeypatch.setenv("JOBLEDGER_LIFELINE_INTERVAL", "5")  # changed after the fact
    settings.cache_clear()

    assert ensure_builtin_definitions(actor="cli", changed_by="init") == []

    lifeline = definitions.get("default", "lifeline")
    assert lifeline is not None
    assert (lifeline.schedule, lifeline.version) == ({"every": 120}, 2)
    purge = definitions.get("default", "purge")
    assert purge is not None
    assert purge.archived  # archived stays archived: not made again


def test_callers_racing_make_each_built_in_once(budgets: None) -> None:
    made: list[str] = []
    start = threading.Barrier(4)

    def ensure() -> None:
        start.wait()
        made.extend(d.name for d in ensure_builtin_definitions())

    threads = [threading.Thread(target=ensure) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(made) == ["lifeline", "purge", "settle_counts", "sync_and_suggest:b1"]
    assert len(definitions.list_("default", include_archived=True)) == 4


def test_a_malformed_setting_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLEDGER_PURGE_AT", "25:00")
    settings.cache_clear()
    try:
        with pytest.raises(ValueError, match="JOBLEDGER_PURGE_AT"):
            ensure_builtin_definitions()
        assert definitions.list_("default") == []
    finally:
        monkeypatch.undo()
        settings.cache_clear()
