"""A misspelt job type in ``JOBLEDGER_TIME_LIMITS`` is refused at ``delay()`` before the
ledger records anything (the settings themselves: tests/unit/test_time_limit_settings.py)."""

from __future__ import annotations

import pytest

from app.config import TimeLimits, settings
from app.exceptions import JobTypeSettingsMisconfigured, TimeLimitsMisconfigured
from app.ledger.rules.retries import RetryPolicy
from tasks import export_data, sync_and_suggest
from tests.support import domain


def test_a_misspelt_job_type_is_refused_before_a_producer_records_a_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.ledger.runtime import time_limit_types

    monkeypatch.setattr(settings(), "time_limits", {"exprot": TimeLimits(hard=60)})
    monkeypatch.setattr(time_limit_types, "_checked", False)
    before = domain.query("SELECT count(*) AS n FROM jobs")[0]["n"]

    with pytest.raises(TimeLimitsMisconfigured, match=r"'exprot'; the job types are: .*export"):
        export_data.delay(dataset="../not a name")  # refused first
    with pytest.raises(TimeLimitsMisconfigured, match="'exprot'"):
        sync_and_suggest.delay(budget_id="not an id")

    assert domain.query("SELECT count(*) AS n FROM jobs")[0]["n"] == before


@pytest.mark.parametrize(
    ("setting", "attribute", "value"),
    [
        ("JOBLEDGER_QUEUES", "queues", {"exprot": "bulk"}),
        ("JOBLEDGER_PRIORITIES", "priorities", {"exprot": 2}),
        ("JOBLEDGER_RETRY_POLICIES", "retry_policies", {"exprot": RetryPolicy()}),
        ("JOBLEDGER_RATE_LIMITS", "rate_limits", {"exprot": "1/m"}),
    ],
)
def test_every_per_type_setting_naming_a_missing_type_is_refused_naming_itself(
    monkeypatch: pytest.MonkeyPatch, setting: str, attribute: str, value: object
) -> None:
    from app.ledger.runtime import time_limit_types

    monkeypatch.setattr(settings(), attribute, value)
    monkeypatch.setattr(time_limit_types, "_checked", False)
    before = domain.query("SELECT count(*) AS n FROM jobs")[0]["n"]

    with pytest.raises(JobTypeSettingsMisconfigured, match=rf"{setting} names .*'exprot'"):
        export_data.delay(dataset="sales")

    assert domain.query("SELECT count(*) AS n FROM jobs")[0]["n"] == before
