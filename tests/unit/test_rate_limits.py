"""``JOBLEDGER_RATE_LIMITS`` gives a job type Celery's own ``rate_limit`` (per worker)."""

from __future__ import annotations

import pytest

from app.config import settings
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task


class NothingPayload(JobPayload):
    pass


def test_a_rate_limited_type_gets_celerys_rate_limit_and_the_others_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_RATE_LIMITS", '{"example.rated": "12/m"}')
    settings.cache_clear()
    try:

        @job_task("example.rated", NothingPayload)
        def rated(job: JobContext, payload: NothingPayload) -> None:
            """Does nothing, at most 12 times a minute per worker."""

        @job_task("example.unrated", NothingPayload)
        def unrated(job: JobContext, payload: NothingPayload) -> None:
            """Does nothing, as often as asked."""

        assert rated.rate_limit == "12/m"
        assert unrated.rate_limit is None
    finally:
        monkeypatch.delenv("JOBLEDGER_RATE_LIMITS")
        settings.cache_clear()
