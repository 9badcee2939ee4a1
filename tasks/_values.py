"""Typed column values: parse what a file holds (text, or native XLSX cells) into JSON.

Usage::

    parse("int", "42")            # 42
    parse("decimal", "19.90")     # "19.90"  (exact: kept as text, never a float)
    parse("date", "2024-03-01")   # "2024-03-01"
    parse("int", "x")             # raises ValueError("not an integer: 'x'")

A type ending in ``?`` (``"int?"``) allows an empty value, which becomes ``None``; without
it an empty or missing value is an error. The ``ValueError`` messages are user-safe and
quote the offending value only as a short, redacted :func:`excerpt`, for a job's
structured item errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from app.ledger.rules.redaction import redact

ColumnType = Literal[
    "str",
    "int",
    "float",
    "decimal",
    "date",
    "bool",
    "str?",
    "int?",
    "float?",
    "decimal?",
    "date?",
    "bool?",
]
#: Characters of a source's value an error message quotes at most.
EXCERPT = 20
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def excerpt(value: Any) -> str:
    """A short, redacted quote of a value read from a source, for an error message.

    Item errors and failure reasons go back to whoever submitted the job; a value from a
    source may be a line of a file the job should never have read, or a secret in a
    row. So a value is never echoed whole: secrets are masked first, then the text is
    cut to :data:`EXCERPT` characters (``…`` marks the cut)."""
    text = redact(value if isinstance(value, str) else repr(value))
    cut = text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")
    return repr(cut) if isinstance(value, str) else cut


def is_empty(value: Any) -> bool:
    """Missing, None or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def parse(column_type: str, value: Any) -> Any:
    """``value`` as ``column_type`` (see the module docstring); raises ``ValueError``."""
    optional = column_type.endswith("?")
    if is_empty(value):
        if optional:
            return None
        raise ValueError("required value is missing")
    return _PARSERS[column_type.rstrip("?")](value)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not an integer: {excerpt(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # XLSX stores every number as a float
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"not an integer: {excerpt(value)}") from None


def _float(value: Any) -> float:
    try:
        number = float(value if isinstance(value, int | float) else str(value).strip())
    except ValueError:
        raise ValueError(f"not a number: {excerpt(value)}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"not a finite number: {excerpt(value)}")
    return number


def parse_decimal(value: Any) -> Decimal:
    """A finite decimal from text or a number (floats through their shortest repr)."""
    if isinstance(value, bool):
        raise ValueError(f"not a decimal number: {excerpt(value)}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {excerpt(value)}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite decimal number: {excerpt(value)}")
    return number


def _decimal(value: Any) -> str:
    return str(parse_decimal(value))


def parse_date(value: Any) -> date:
    """A date from ISO text (``2024-03-01``, or a timestamp's date part) or a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return (
            date.fromisoformat(text[:10])
            if len(text) > 10 and text[10] in "T "
            else (date.fromisoformat(text))
        )
    except ValueError:
        raise ValueError(f"not an ISO date (YYYY-MM-DD): {excerpt(value)}") from None


def _date(value: Any) -> str:
    return parse_date(value).isoformat()


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean (true/false, yes/no, 1/0): {excerpt(value)}")


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "str": _str,
    "int": _int,
    "float": _float,
    "decimal": _decimal,
    "date": _date,
    "bool": _bool,
}


def storage_problem(value: Any) -> str | None:
    """Why PostgreSQL's ``jsonb`` would refuse ``value``, or None when it can be stored.

    Python's ``json`` reads ``NaN`` and ``Infinity`` (and numbers too large for a float
    as infinity), NUL characters and unpaired surrogates (``"\\ud800"``); ``jsonb`` refuses
    each, and one such value in a batch would fail the whole ``INSERT``. Checked per row
    before the write, so the row becomes an item error and the others go in. Iterative,
    so a deeply nested document costs no recursion.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{item!r} is not a number PostgreSQL can store (NaN and infinity are not)"
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            for key, inner in item.items():
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem:
                    return f"a key: {problem}"
                pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store"
    if _SURROGATE.search(text):
        return "contains an unpaired UTF-16 surrogate, which is not valid Unicode text"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
