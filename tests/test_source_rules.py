"""The source rules as pure logic (no worker): how database sources are configured and
queried, where file sources may be and which addresses URL sources may reach."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from tasks import _database
from tasks._confine import SourceRefused

# -- database sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('["bank"]', "must be a JSON object"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": [], "tenants": ["*"]}}', "tables"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": ["t; drop"], "tenants": ["*"]}}', "tables"),
        ('{"bank": {"url": "sqlite:///b.db", "tables": ["t"]}}', "tenants"),
        ('{"bank": {"url": "mysql://h/b", "tables": ["t"], "tenants": ["*"]}}', "not supported"),
        ('{"bank": {"url": "::", "tables": ["t"], "tenants": ["*"]}}', "not a SQLAlchemy"),
        ('{"../x": {"url": "sqlite:///b.db", "tables": ["t"], "tenants": ["*"]}}', "source name"),
    ],
)
def test_a_malformed_database_sources_setting_says_what_to_fix(setting: str, problem: str) -> None:
    with pytest.raises(_database.DatabaseSourcesMisconfigured, match="JOBLEDGER_DATABASE_SOURCES"):
        try:
            _database._parse(setting)
        except _database.DatabaseSourcesMisconfigured as error:
            assert problem in str(error)
            raise


def test_the_source_query_is_one_select_with_quoted_names_and_a_bound_cursor() -> None:
    query = _database.select_rows("bank.Tx", "updated_at", "2024-01-01' OR '1'='1")

    compiled = query.compile(dialect=postgresql.dialect())
    assert (
        str(compiled).split()
        == (
            'SELECT * FROM bank."Tx" WHERE bank."Tx".updated_at >= %(since)s '
            'ORDER BY bank."Tx".updated_at'
        ).split()
    )
    assert compiled.params == {"since": "2024-01-01' OR '1'='1"}
    plain = str(_database.select_rows("bank_tx", None, None).compile(dialect=sqlite.dialect()))
    assert plain.split() == ["SELECT", "*", "FROM", "bank_tx"]


@pytest.mark.parametrize(
    ("source", "ledger", "same"),
    [
        ("postgresql://u@127.0.0.1/ledger", "postgresql://p@localhost:5432/ledger", True),
        ("postgresql://u@db.internal/ledger", "postgresql://p@db.internal/ledger", True),
        ("postgresql://u@127.0.0.1/bank", "postgresql://p@127.0.0.1/ledger", False),
        ("postgresql://u@127.0.0.1:5433/ledger", "postgresql://p@127.0.0.1/ledger", False),
        ("sqlite:///var/../var/jobledger.sqlite3", "sqlite:///var/jobledger.sqlite3", True),
        ("sqlite:///var/bank.db", "sqlite:///var/jobledger.sqlite3", False),
        ("sqlite:///var/jobledger.sqlite3", "postgresql://p@127.0.0.1/ledger", False),
    ],
)
def test_the_ledgers_own_database_is_recognised_by_its_url(
    source: str, ledger: str, same: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    from app.config import settings

    monkeypatch.setattr(settings(), "database_url", ledger)
    assert _database._is_ledger_url(make_url(source)) is same


def test_a_refusal_is_a_value_error_so_payload_validation_names_the_field() -> None:
    assert issubclass(SourceRefused, ValueError)
