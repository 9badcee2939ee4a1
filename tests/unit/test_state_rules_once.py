"""The state rules and the actor names are stated once, and only the engines know which
database the ledger is. No server: these read the code and the statements' text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from app.ledger.engines import postgresql
from app.ledger.rules import actors, states
from app.ledger.rules.states import PREDECESSORS, START_SOURCES, JobStatus

S = JobStatus
ROOT = Path(__file__).resolve().parents[2]


def in_lists(sql: str) -> list[set[str]]:
    """The status sets of every ``status IN (…)`` of ``sql``."""
    return [
        set(re.findall(r"'(\w+)'", inside)) for inside in re.findall(r"status IN \(([^)]*)\)", sql)
    ]


def test_the_fast_path_start_moves_from_the_sources_the_state_table_gives() -> None:
    assert PREDECESSORS[S.RUNNING] | {S.RUNNING} == START_SOURCES  # through retrying
    assert in_lists(postgresql.RECORD_STARTED.body) == [{s.value for s in START_SOURCES}]


def test_the_fast_path_finish_moves_from_the_predecessors_of_its_targets() -> None:
    assert in_lists(postgresql.RECORD_FINISHED.body) == [
        {s.value for s in PREDECESSORS[S.SUCCEEDED]}
    ]
    assert PREDECESSORS[S.SUCCEEDED] == PREDECESSORS[S.PARTIAL]


def test_a_finish_target_with_other_predecessors_gets_its_own_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An edge added to the state table reaches the SQL text: here partial may also be
    reached from retrying, and the generated guard says so for partial only."""
    changed = {**PREDECESSORS, S.PARTIAL: frozenset({S.RUNNING, S.RETRYING})}
    monkeypatch.setattr(postgresql, "PREDECESSORS", changed)

    guard = postgresql._moves_to("$3", (S.SUCCEEDED, S.PARTIAL))

    assert "($3 IN ('succeeded') AND status IN ('running'))" in guard
    assert "($3 IN ('partial') AND status IN ('retrying', 'running'))" in guard


def test_no_module_outside_the_engines_asks_which_database_the_ledger_is() -> None:
    allowed = {
        "app/db.py",  # creates the engine
        "tasks/_database.py",  # the dialect of *source* databases, not the ledger's
    }
    found = []
    for folder in ("app", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith("app/ledger/engines/") or name in allowed:
                continue
            text = path.read_text()
            if re.search(r"\bdialect\b|is_postgresql", text):
                found.append(name)
    assert found == []


def test_no_status_list_is_typed_outside_the_state_table() -> None:
    """A literal set of statuses (``{S.QUEUED, S.RETRYING…}``, ``status IN ('queued'…``)
    outside rules/states.py restates the rules; derive it from PREDECESSORS instead."""
    literal_set = re.compile(r"\{\s*S\.[A-Z]+\s*,\s*S\.[A-Z]+")
    sql_list = re.compile(r"IN \('(queued|running|retrying|succeeded|partial|failed|canceled)'")
    found = []
    for folder in ("app", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == "app/ledger/rules/states.py":
                continue
            text = path.read_text()
            if literal_set.search(text) or sql_list.search(text):
                found.append(name)
    assert found == []


def test_actor_and_trigger_names_are_stated_once() -> None:
    assert get_args(actors.Actor) == actors.ACTORS
    assert get_args(actors.Trigger) == actors.TRIGGERS
    from models import ledger as schema

    assert schema.ACTORS is actors.ACTORS
    assert schema.TRIGGERS is actors.TRIGGERS


def test_every_target_status_has_its_predecessors() -> None:
    assert set(states.PREDECESSORS) == set(JobStatus)


def test_each_engine_implements_the_whole_interface() -> None:
    from app.ledger.engines.base import Engine
    from app.ledger.engines.sqlite import SQLiteEngine

    families = Engine.__abstractmethods__
    assert {"record_queued", "start", "finish", "fail", "cancel", "lose", "vacuum"} <= families
    for engine in (postgresql.PostgreSQLEngine, SQLiteEngine):
        assert engine.__abstractmethods__ == frozenset()
        assert isinstance(engine(), Engine)
    assert {postgresql.PostgreSQLEngine.dialect, SQLiteEngine.dialect} == {"postgresql", "sqlite"}
