"""A prepared statement's parameters as it sends them: sanitised for their column,
``jsonb`` ones encoded as ``json.dumps`` would (pure: nothing is executed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.ledger.engines.prepared import Prepared

STATEMENT = Prepared(
    "jobledger_test_binding",
    ("uuid", "jsonb", "jsonb", "text"),
    "SELECT $1, $2, $3, $4",
    prefix="SET LOCAL synchronous_commit = off; ",
    columns={2: "result", 3: "errors", 4: "message"},
)


@pytest.mark.parametrize(
    "document",
    [None, [], {}, [{"row": 1, "message": "bad"}], {"value": 3}, {"rows": []}, 0, "", False],
)
def test_a_document_is_encoded_as_json_dumps_would(document: Any) -> None:
    bound = STATEMENT._bind(("id", document, document, "finished"))
    assert bound[1] == bound[2] == json.dumps(document)


def test_a_secret_in_a_stored_parameter_is_redacted() -> None:
    bound = STATEMENT._bind(("id", {"dsn": "postgresql://u:pw@db/x"}, [], "password=pw"))
    assert bound == ("id", json.dumps({"dsn": "postgresql://u:***@db/x"}), "[]", "password=***")


def test_the_statement_is_executed_by_name_with_its_prefix() -> None:
    assert STATEMENT.execute_sql(("id", None, [], "finished"))[0] == (
        "SET LOCAL synchronous_commit = off; EXECUTE jobledger_test_binding(%s, %s, %s, %s)"
    )
