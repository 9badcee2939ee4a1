"""A soft time limit the job body handles: it checkpoints and ends ``partial`` or
``failed`` with its own reason, on a real worker (Celery raises the soft limit inside
the body; the hard limit, not reached here, would kill the process)."""

from __future__ import annotations

import pytest

from tests.support import ledger
from tests.support.controls import checkpointing

pytestmark = pytest.mark.usefixtures("worker")


def test_a_body_that_catches_its_soft_limit_ends_partial_and_keeps_its_work() -> None:
    job_id = checkpointing.apply_async(
        kwargs={"on_limit": "partial"}, soft_time_limit=1, time_limit=20
    ).id

    row = ledger.wait_for_status(job_id, "partial", "failed", "succeeded", timeout=60)
    assert row["status"] == "partial"
    assert row["result"]["digests"] > 0
    assert [error["message"] for error in row["errors"]] == [
        "not computed: the soft time limit (1 s) came first"
    ]
    assert ledger.transitions(job_id) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "partial"),
    ]


def test_a_body_that_catches_its_soft_limit_may_fail_with_its_own_reason() -> None:
    job_id = checkpointing.apply_async(
        kwargs={"on_limit": "fail"}, soft_time_limit=1, time_limit=20
    ).id

    row = ledger.wait_for_status(job_id, "partial", "failed", "succeeded", timeout=60)
    assert row["status"] == "failed"
    assert row["failure_reason"].startswith("stopped by the soft time limit (1 s) after ")
    assert row["failure_reason"].endswith(" digests; nothing kept")
    assert ledger.transitions(job_id)[-1] == ("running", "failed")
