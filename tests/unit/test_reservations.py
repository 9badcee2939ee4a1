"""Reading kombu's Redis reservations: only the message headers matter, and an entry
that is not a kombu message never stops a lifeline pass."""

from __future__ import annotations

import json

import pytest

from app.ledger.operations.reservations import _headers


def test_the_headers_of_a_reserved_message_are_read_from_kombu_s_entry() -> None:
    message = {"body": "e30=", "headers": {"id": "t1", "jobledger": {"job_id": "j"}}}
    raw = json.dumps([message, "exchange", "routing-key"]).encode()
    assert _headers(raw) == {"id": "t1", "jobledger": {"job_id": "j"}}


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"{}", b'[{"headers": 5}]', b"[3]"])
def test_an_entry_that_is_not_a_kombu_message_has_no_headers(raw: bytes) -> None:
    assert _headers(raw) == {}
