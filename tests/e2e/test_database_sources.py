"""Database sources of ``sync`` are named connections the operator configures; a payload
never carries a database URL or SQL.

The attack first (a database URL and stacked statements through the API and
``delay()``), then what a named source allows: only its tables, only its tenants, only
reading, never the ledger's own database. Real worker, Redis, PostgreSQL and SQLite;
the sources are the ones tests/conftest.py configures.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.celery import app
from app.exceptions import InvalidPayload
from tasks import sync, sync_and_suggest
from tests.conftest import DATABASE_URL
from tests.support import api, domain, sources
from tests.support.api import ACME, OTHER
from tests.support.ledger import wait_for_status

pytestmark = pytest.mark.usefixtures("worker")

ROWS = [
    ("a", "2024-01-01", "Shop A", -1.5, "Food", "2024-01-01T00:00:00"),
    ("b", "2024-01-02", "Shop B", -2.5, None, "2024-01-02T00:00:00"),
]


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from api.client()


@pytest.fixture
def pg_bank() -> None:
    sources.postgres_bank(ROWS)


def finished(job_id: str) -> dict[str, Any]:
    return wait_for_status(job_id, "succeeded", "partial", "failed", "canceled", timeout=60)


def as_acme(source: dict[str, str]) -> str:
    """Queue a sync of ``source`` for tenant acme; its job id."""
    job = sync.apply_async(
        kwargs={"budget_id": domain.unique("acme"), "source": source}, tenant="acme"
    )
    return str(job.id)


def table_exists(name: str) -> bool:
    return domain.query("SELECT to_regclass(:name) AS found", name=name)[0]["found"] is not None


def transactions(budget_id: str) -> list[str]:
    rows = domain.query(
        "SELECT external_id FROM transactions WHERE budget_id = :b ORDER BY 1", b=budget_id
    )
    return [row["external_id"] for row in rows]


# -- the attack: a database URL and stacked statements in a payload --------------------------


def test_a_database_url_with_stacked_sql_is_refused_at_the_api_and_runs_nothing(
    client: TestClient,
) -> None:
    victim = client.post(
        "/jobs",
        headers=OTHER,
        json={"type": "sync", "payload": {"budget_id": "theirs", "source": "x.csv"}},
    ).json()["id"]
    marker = f"pwned_{uuid.uuid4().hex[:8]}"
    attack = (
        f"SELECT 1 AS x) AS a; CREATE TABLE {marker}(x int); "
        f"UPDATE jobs SET status='failed', failure_reason='pwned' WHERE tenant='other'; "
        "COMMIT; SELECT * FROM (SELECT 1 AS x"
    )

    response = client.post(
        "/jobs",
        headers=ACME,
        json={
            "type": "sync",
            "payload": {"budget_id": "p", "source": {"url": DATABASE_URL, "query": attack}},
        },
    )

    assert response.status_code == 422, response.text
    fields = {error["field"]: error["message"] for error in response.json()["detail"]}
    assert "never carries a database URL or SQL" in fields["payload.source.database.url"]
    assert "never carries a database URL or SQL" in fields["payload.source.database.query"]
    assert api.job_count() == 1  # the victim only
    finished(victim)  # the victim's own run (a missing file) is all that happened to it
    assert not table_exists(marker)
    reasons = domain.query("SELECT failure_reason FROM jobs WHERE id = :id", id=victim)
    assert reasons[0]["failure_reason"] != "pwned"


def test_a_database_url_or_sql_is_refused_at_delay_in_every_form() -> None:
    attack = "SELECT 1 AS x) AS a; CREATE TABLE pwned(x int); SELECT * FROM (SELECT 1 AS x"
    forms: list[Any] = [
        {"url": DATABASE_URL, "query": attack},
        {"url": DATABASE_URL, "table": "jobs"},
        f"{DATABASE_URL}#table=jobs",
        {"kind": "database", "connection": "bank", "table": "bank_tx", "query": attack},
    ]
    for source in forms:
        with pytest.raises(InvalidPayload) as refused:
            sync.delay("p", source)
        assert any(field.endswith((".url", ".query")) for field in refused.value.fields), source
        with pytest.raises(InvalidPayload):
            sync_and_suggest.delay("p", source)

    assert api.job_count() == 0


def test_with_no_database_source_configured_every_database_payload_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import settings

    monkeypatch.setenv("JOBLEDGER_DATABASE_SOURCES", "")
    settings.cache_clear()
    try:
        with pytest.raises(InvalidPayload) as refused:
            sync.delay("p", {"connection": "bank", "table": "bank_tx"})
    finally:
        monkeypatch.undo()
        settings.cache_clear()

    assert "no database source named 'bank'" in refused.value.fields["source.database.connection"]
    assert api.job_count() == 0


# -- what a named source allows --------------------------------------------------------------


def test_a_named_source_is_read_by_name_and_table() -> None:
    connection = sources.sqlite_bank(list(ROWS))
    connection.close()
    budget = domain.unique("named")

    job = finished(sync.delay(budget, "database://bank/bank_tx").id)

    assert job["status"] == "succeeded", job["failure_reason"]
    assert transactions(budget) == ["a", "b"]
    assert job["payload"]["source"] == {
        "kind": "database",
        "connection": "bank",
        "table": "bank_tx",
        "cursor_field": "updated_at",
    }


def test_a_named_source_exposes_only_its_tables(client: TestClient) -> None:
    with pytest.raises(InvalidPayload) as refused:
        sync.delay("p", {"connection": "bank", "table": "sqlite_master"})
    response = client.post(
        "/jobs",
        headers=ACME,
        json={
            "type": "sync",
            "payload": {"budget_id": "p", "source": {"connection": "pg_bank", "table": "audit"}},
        },
    )

    assert (
        "does not expose a table 'sqlite_master'" in refused.value.fields["source.database.table"]
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == ["payload.source.database.table"]
    assert api.job_count() == 0


@pytest.mark.usefixtures("pg_bank")
def test_a_source_is_refused_to_a_tenant_it_is_not_granted_to(client: TestClient) -> None:
    source = {"connection": "pg_bank", "table": "bank_tx"}
    theirs = client.post(
        "/jobs",
        headers=OTHER,
        json={"type": "sync", "payload": {"budget_id": "p", "source": source}},
    )
    unknown = client.post(
        "/jobs",
        headers=OTHER,
        json={
            "type": "sync",
            "payload": {"budget_id": "p", "source": {**source, "connection": "nope"}},
        },
    )
    with pytest.raises(InvalidPayload):
        sync.delay("p", source)  # the default tenant is not granted either
    assert api.job_count() == 0

    # Same answer as a source that does not exist: a tenant cannot learn it is there.
    assert theirs.status_code == unknown.status_code == 422
    assert theirs.json()["detail"][0]["field"] == "payload.source.database.connection"
    assert (
        theirs.json()["detail"][0]["message"].replace("pg_bank", "nope")
        == (unknown.json()["detail"][0]["message"])
    )

    ours = client.post(
        "/jobs",
        headers=ACME,
        json={"type": "sync", "payload": {"budget_id": "p", "source": source}},
    )
    assert ours.status_code == 202
    assert finished(ours.json()["id"])["status"] == "succeeded"


@pytest.mark.usefixtures("pg_bank")
def test_the_worker_checks_the_tenant_the_ledger_recorded_not_the_message() -> None:
    # A message published without the ledger (or forged on the broker): the worker
    # records it under the default tenant, which pg_bank does not grant.
    job_id = str(uuid.uuid4())
    app.send_task(
        "sync",
        kwargs={"budget_id": "forged", "source": {"connection": "pg_bank", "table": "bank_tx"}},
        task_id=job_id,
    )

    job = finished(job_id)

    assert job["status"] == "failed"
    assert job["tenant"] == "default"
    assert (
        "no database source named 'pg_bank' is configured for tenant 'default'"
        in (job["failure_reason"])
    )
    assert transactions("forged") == []


@pytest.mark.usefixtures("pg_bank")
def test_a_source_is_read_in_a_read_only_transaction() -> None:
    # sneaky_tx is a view whose rows INSERT into audit as they are read.
    job = finished(as_acme({"connection": "pg_bank", "table": "sneaky_tx"}))

    assert job["status"] == "failed"
    assert "read-only transaction" in job["failure_reason"]
    assert sources.postgres_source("SELECT count(*) FROM audit") == [(0,)]


@pytest.mark.usefixtures("pg_bank")
def test_a_statement_past_the_sources_timeout_is_canceled() -> None:
    # slow_tx sleeps 30 s per row; pg_bank's statement_timeout is 1 s.
    job = finished(as_acme({"connection": "pg_bank", "table": "slow_tx"}))

    assert job["status"] == "failed"
    assert "statement timeout" in job["failure_reason"]


def test_the_ledgers_own_database_is_refused_as_a_source() -> None:
    with pytest.raises(InvalidPayload) as refused:
        sync.delay("p", {"connection": "ledger", "table": "jobs"})

    assert "the ledger's own database" in refused.value.fields["source.database.connection"]


def test_the_ledger_under_another_host_name_is_refused_by_the_worker() -> None:
    if "@127.0.0.1:" not in DATABASE_URL:
        pytest.skip("the alias in tests/conftest.py is for a ledger on 127.0.0.1")
    budget = domain.unique("alias")
    job = finished(sync.delay(budget, {"connection": "ledger_alias", "table": "jobs"}).id)

    assert job["status"] == "failed"
    assert "is the ledger's own database (reached under another name)" in job["failure_reason"]
    assert transactions(budget) == []
