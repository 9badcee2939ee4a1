"""Secrets never reach the ledger: redaction as pure logic."""

from __future__ import annotations

import pytest

from app.ledger.redaction import redact, redact_data
from app.ledger.transitions import MAX_TEXT, truncate


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("could not connect to postgresql://user:s3cret@db:5432/app", "s3cret"),
        ("redis://:hunter2@localhost:6379/0 refused", "hunter2"),
        ("login failed: password=hunter2 for user bob", "hunter2"),
        ("token: abc.def.ghi expired", "abc.def.ghi"),
        ("secret='two words' rejected", "two words"),
        ('{"api_key": "AKIA123"}', "AKIA123"),
        ("Authorization: Bearer eyJhbGciOi", "eyJhbGciOi"),
        ("client_secret=xyz&grant=1", "xyz"),
    ],
)
def test_secrets_are_masked(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert "***" in redacted


def test_what_is_not_secret_stays_readable() -> None:
    text = "row 12: amount 'abc' is not a number (user bob@example.com, host db:5432)"
    assert redact(text) == text


def test_url_keeps_user_and_host() -> None:
    assert redact("postgresql://user:pw@host/db") == "postgresql://user:***@host/db"


def test_structures_are_redacted_recursively_and_secret_keys_masked_whole() -> None:
    data = {"password": "pw", "nested": [{"dsn": "mysql://u:pw2@h/d"}], "count": 3}
    assert redact_data(data) == {
        "password": "***",
        "nested": [{"dsn": "mysql://u:***@h/d"}],
        "count": 3,
    }


def test_long_text_is_truncated_with_a_marker_within_the_limit() -> None:
    text = "x" * (MAX_TEXT * 3)
    cut = truncate(text)
    assert len(cut) == MAX_TEXT
    assert cut.endswith("characters]")
    assert "truncated" in cut


def test_text_at_the_limit_is_kept_whole() -> None:
    assert truncate("y" * MAX_TEXT) == "y" * MAX_TEXT


@pytest.mark.parametrize("unit", ["z", "password", "x://", "a://b:", "token=", "ab://c:d"])
def test_megabyte_inputs_are_redacted_in_linear_time(unit: str) -> None:
    # pathological for naive patterns (quadratic backtracking); the suite's timeout guards it
    text = unit * (1_000_000 // len(unit))
    assert len(redact(text)) <= len(text) + 3
