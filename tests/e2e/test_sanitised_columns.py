"""Secrets never enter the ledger: every text column, written by a real worker (or an
operator's cancel), read back with SQL.

``example.leaky`` writes a text carrying a password with ``@`` and ``/``, a GitHub
token, an AWS key id and a bearer JWT (tests/support/secrets.py) into every column a
job can reach; each test reads one column and finds none of them, and the mask instead.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.ledger.operations import actions as operations
from app.ledger.rules.sanitise import MAX_TEXT
from tests.support import ledger as read
from tests.support.jobs import leaky, leaky_pair
from tests.support.secrets import GITHUB, TEXT, URL, leaked

pytestmark = pytest.mark.usefixtures("worker")

FINAL = ("succeeded", "partial", "failed", "canceled")


def run(outcome: str = "succeed", *, chained: bool = False) -> uuid.UUID:
    """Run a leaky job (or chain) to its end; its job id."""
    kwargs = {"text": TEXT, "uri": URL, "label": f"budget {TEXT}", "outcome": outcome}
    task = leaky_pair if chained else leaky
    result = task.apply_async(kwargs=kwargs, metadata={"note": TEXT, "token": GITHUB})
    read.wait_for_status(result.id, *FINAL)
    return uuid.UUID(result.id)


def column(sql: str, job_id: uuid.UUID) -> list[Any]:
    """Every value ``sql`` (with ``:id``) reads for the job, as text."""
    with db.engine().connect() as connection:
        return [row[0] for row in connection.execute(text(sql), {"id": job_id})]


def assert_sanitised(values: list[Any]) -> None:
    assert values, "the column holds nothing to check"
    assert leaked(values) == []
    assert "***" in str(values)


def test_payload() -> None:
    assert_sanitised(column("SELECT payload::text FROM jobs WHERE id = :id", run()))


def test_subject() -> None:
    assert_sanitised(column("SELECT subject FROM jobs WHERE id = :id", run()))


def test_metadata() -> None:
    assert_sanitised(column("SELECT metadata::text FROM jobs WHERE id = :id", run()))


def test_progress_message() -> None:
    # progress is written as the job runs; the finish keeps the last message
    assert_sanitised(column("SELECT progress_message FROM jobs WHERE id = :id", run()))


def test_result() -> None:
    assert_sanitised(column("SELECT result::text FROM jobs WHERE id = :id", run()))


def test_result_url() -> None:
    assert_sanitised(column("SELECT result_url FROM jobs WHERE id = :id", run()))


def test_failure_reason() -> None:
    assert_sanitised(column("SELECT failure_reason FROM jobs WHERE id = :id", run("fail")))


def test_errors_of_a_failure() -> None:
    assert_sanitised(column("SELECT errors::text FROM jobs WHERE id = :id", run("fail")))


def test_item_errors() -> None:
    assert_sanitised(column("SELECT errors::text FROM jobs WHERE id = :id", run("partial")))


def test_event_messages() -> None:
    messages = column("SELECT message FROM job_events WHERE job_id = :id", run("fail"))
    assert leaked(messages) == []
    assert any("***" in message for message in messages)


def test_log_messages() -> None:
    assert_sanitised(column("SELECT message FROM job_logs WHERE job_id = :id", run()))


def test_file_uris() -> None:
    assert_sanitised(column("SELECT uri FROM job_files WHERE job_id = :id", run()))


def test_step_results() -> None:
    job_id = run(chained=True)
    assert_sanitised(column("SELECT result::text FROM job_steps WHERE job_id = :id", job_id))


def test_a_step_cancel_reason_on_the_step_and_on_its_parent() -> None:
    job_id = run("cancel", chained=True)
    assert read.job(job_id)["status"] == "canceled"  # type: ignore[index]
    assert_sanitised(column("SELECT failure_reason FROM jobs WHERE id = :id", job_id))
    steps = column(
        "SELECT failure_reason FROM job_steps WHERE job_id = :id AND position = 2", job_id
    )
    assert_sanitised(steps)


def test_an_operator_cancel_reason() -> None:
    waiting = leaky.apply_async(kwargs={"text": "", "uri": "", "label": ""}, countdown=600)
    job_id = uuid.UUID(waiting.id)

    operations.cancel(job_id, actor="api", reason=TEXT)

    assert_sanitised(column("SELECT failure_reason FROM jobs WHERE id = :id", job_id))
    messages = column("SELECT message FROM job_events WHERE job_id = :id", job_id)
    assert leaked(messages) == []


def test_a_log_line_cut_inside_a_secret_keeps_it_masked() -> None:
    # cut first, the URL would lose its "@" and the rest of the password would show
    text = "x" * 4930 + " https://app:" + "Quartz" * 20 + "@db.internal/app"
    result = leaky.apply_async(kwargs={"text": text, "uri": "-", "label": "-"})
    read.wait_for_status(result.id, *FINAL)

    [line] = column("SELECT message FROM job_logs WHERE job_id = :id", uuid.UUID(result.id))
    assert len(line) <= MAX_TEXT
    assert "Quartz" not in line
