"""Unit tests of the sanitiser's storable rule: whatever text or document a ledger
writer passes, what comes out PostgreSQL can store (no NUL, no unpaired surrogate, no
non-finite number), and plain text comes out as the very same object."""

from __future__ import annotations

import math
from typing import Any

import pytest

from app.ledger.rules.sanitise import REPLACEMENT, clean, clean_row, storable

R = REPLACEMENT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("plain ascii", "plain ascii"),
        ("a\x00b", f"a{R}b"),
        ("\x00\x00", f"{R}{R}"),
        ("\ud800", R),
        ("x\udfffy", f"x{R}y"),
        ("\ud83d\ude00", f"{R}{R}"),  # two lone halves in a str, not a pair
        ("😀 ünïcode", "😀 ünïcode"),
        ("é\x00\udc80", f"é{R}{R}"),
    ],
)
def test_storable_replaces_what_postgresql_refuses(text: str, expected: str) -> None:
    assert storable(text) == expected
    storable(text).encode("utf-8")  # psycopg2 encodes as UTF-8: must not raise


def test_plain_text_is_returned_as_the_same_object() -> None:
    text = "a log line"
    assert clean("message", text) is text
    assert storable(text) is text


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("failure_reason", "bad\x00x", f"bad{R}x"),
        ("message", "\ud800", R),
        ("progress_message", "p\x00", f"p{R}"),
        ("subject", "s\udc00", f"s{R}"),
        (
            "errors",
            [{"field": "a\x00", "message": "m\ud800"}],
            [{"field": f"a{R}", "message": f"m{R}"}],
        ),
        (
            "result",
            {"k\x00": [1.5, math.nan, math.inf, -math.inf]},
            {f"k{R}": [1.5, "NaN", "Infinity", "-Infinity"]},
        ),
        ("metadata", {"a": {"b": "\ud800"}}, {"a": {"b": R}}),
        ("result", math.nan, "NaN"),
        ("created_by", "me\x00", f"me{R}"),  # a column without a policy
        ("status", "running", "running"),
        ("attempts", 3, 3),
        ("errors", [], []),
    ],
)
def test_clean_makes_every_column_storable(column: str, value: Any, expected: Any) -> None:
    assert clean(column, value) == expected
    assert clean_row({column: value}) == {column: expected}


def test_documents_are_still_redacted() -> None:
    cleaned = clean("metadata", {"password": "hunter2\x00", "note": "ok"})
    assert cleaned == {"password": "***", "note": "ok"}
