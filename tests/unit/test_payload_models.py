"""The payload models of the typed tasks: refusals keep secrets out, forms are normalised
(no ledger, no broker; refusal at ``delay()``: tests/integration/test_task_payloads.py)."""

from __future__ import annotations

import pytest

from app.exceptions import InvalidPayload
from tasks import import_data, sync


def test_password_is_not_echoed_in_the_refusal() -> None:
    with pytest.raises(InvalidPayload) as refused:
        sync.delay("b", "postgresql://bank:secret@db/bank#table=tx")

    assert "secret" not in str(refused.value)


def test_guessed_format_is_recorded_in_the_payload() -> None:
    payload = import_data.validate_payload(("https://host/x/Sales.XLSX?download=1", "sales"), {})

    assert payload.model_dump()["format"] == "xlsx"


def test_source_text_forms_are_normalised() -> None:
    file_source = sync.validate_payload(("b", "/data/bank.jsonl"), {}).model_dump()["source"]
    database = sync.validate_payload(("b", "database://bank/bank_tx"), {})

    assert file_source == {
        "kind": "file",
        "path": "/data/bank.jsonl",
        "format": "jsonl",
        "cursor_field": "updated_at",
    }
    assert database.model_dump()["source"] == {
        "kind": "database",
        "connection": "bank",
        "table": "bank_tx",
        "cursor_field": "updated_at",
    }
