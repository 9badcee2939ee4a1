"""Default and per-type time limits: parsed and checked once, given to every job type."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from app.celery import app
from app.config import Settings, settings
from app.ledger.runtime.chain import ChainJobTask
from app.ledger.runtime.task import JobTask


def test_every_job_type_has_its_soft_and_hard_time_limits() -> None:
    app.loader.import_default_modules()  # the job types' modules, as a worker does
    job_types = [
        task
        for task in app.tasks.values()
        if isinstance(task, JobTask) and not isinstance(task, ChainJobTask)
    ]
    assert {task.name for task in job_types} >= {"import", "export", "sync", "suggest", "purge"}
    for task in job_types:
        assert (task.soft_time_limit, task.time_limit) == settings().time_limits_of(task.name)
        assert 0 < task.soft_time_limit < task.time_limit


def test_a_type_takes_the_defaults_for_what_it_does_not_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_TIME_LIMIT", "600")
    monkeypatch.setenv("JOBLEDGER_SOFT_TIME_LIMIT", "500")
    monkeypatch.setenv(
        "JOBLEDGER_TIME_LIMITS",
        '{"export": {"soft": 60, "hard": 90}, "sync": {"hard": 7200}, "suggest": {"hard": 100}}',
    )
    limits = Settings()

    assert limits.time_limits_of("import") == (500, 600)
    assert limits.time_limits_of("export") == (60, 90)
    assert limits.time_limits_of("sync") == (500, 7200)
    assert limits.time_limits_of("suggest") == (90, 100)  # 90 % of a hard limit below 500


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOBLEDGER_SOFT_TIME_LIMIT", "4000", "the defaults: the soft time limit (4000 s)"),
        ("JOBLEDGER_TIME_LIMITS", '{"export": {"soft": 9, "hard": 5}}', "['export']: the soft"),
        ("JOBLEDGER_TIME_LIMITS", '{"export": {"hard": 0}}', "greater than 0"),
        ("JOBLEDGER_TIME_LIMITS", '{"export": {"hrad": 10}}', "Extra inputs"),
    ],
)
def test_incoherent_time_limits_are_refused_naming_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()
