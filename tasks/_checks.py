"""The checks of a ``test_run`` scenario: their definitions (checked at ``delay()``) and
how an observed value is judged. Pure: the job reads the values (:mod:`tasks.test_run`).

Usage::

    check = Check(check="row_count", dataset="tags", min=1, max=500)
    expectation_problem(check, 640)     # "640 is above the maximum 500"; None: passes

The four checks (``check`` names the kind):

- ``row_count``: the number of rows of ``dataset``.
- ``field_value``: the value of ``field`` in one row of ``dataset``, the row of ``key``
  (a keyed import's key) or the ``row``-th row in import order (1 first).
- ``job_succeeded``: ``job`` (a UUID or run name of the same tenant) ended ``succeeded``.
- ``job_result``: the value at ``path`` (dotted: ``totals.rows``; a list item by its
  index, ``cases.0.passed``) in ``job``'s result.

``row_count``, ``field_value`` and ``job_result`` compare the value with ``equals``,
``min`` and/or ``max`` (inclusive; numbers compare by value, so ``"12.50"`` equals
``12.5``); at least one must be given. A field a kind does not use is refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue, ValidationInfo, field_validator

from app.exceptions import InvalidJobId
from app.ledger.reads.reports import parse_job_ref
from tasks._fields import MAX_BIGINT, DatasetName, KindItem, fits_kind
from tasks._values import excerpt, parse_decimal

CheckKind = Literal["row_count", "field_value", "job_succeeded", "job_result"]

USES: dict[str, frozenset[str]] = {
    "row_count": frozenset({"dataset", "equals", "min", "max"}),
    "field_value": frozenset({"dataset", "field", "key", "row", "equals", "min", "max"}),
    "job_succeeded": frozenset({"job"}),
    "job_result": frozenset({"job", "path", "equals", "min", "max"}),
}
NEEDS: dict[str, frozenset[str]] = {
    "row_count": frozenset({"dataset"}),
    "field_value": frozenset({"dataset", "field"}),
    "job_succeeded": frozenset({"job"}),
    "job_result": frozenset({"job", "path"}),
}
#: The kinds that compare a value with equals/min/max.
COMPARING = frozenset({"row_count", "field_value", "job_result"})
#: Longest ``equals`` a check may compare with, as compact JSON: one value of a row or a
#: result, not a data set (a bigger one would sit in the ledger's payload, every message
#: and every error that quotes it).
MAX_EQUALS_BYTES = 64 * 1024
#: Longest ``job`` reference: a UUID in any of its spellings, or a run name, is shorter.
MAX_JOB_REF = 64
#: A dotted path into a job's result.
ResultPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$", max_length=256)]


class Check(KindItem):
    """One case of a scenario (see the module docstring for each kind)."""

    check: CheckKind
    #: How the result names the case; default ``<index+1>. <check>``.
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    dataset: DatasetName | None = Field(default=None, validate_default=True)
    field: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, validate_default=True
    )
    key: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, validate_default=True
    )
    row: Annotated[int, Field(ge=1, le=MAX_BIGINT)] | None = Field(
        default=None, validate_default=True
    )
    job: Annotated[str, Field(max_length=MAX_JOB_REF)] | None = Field(
        default=None, validate_default=True
    )
    path: ResultPath | None = Field(default=None, validate_default=True)
    equals: JsonValue = Field(default=None, validate_default=True)
    min: Decimal | None = Field(default=None, validate_default=True, allow_inf_nan=False)
    max: Decimal | None = Field(default=None, validate_default=True, allow_inf_nan=False)

    @field_validator("equals", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        """Measured before pydantic walks it: validating a list of a million items as
        ``JsonValue`` takes seconds of the producer's time."""
        try:
            size = len(json.dumps(value, separators=(",", ":"), default=str))
        except (TypeError, ValueError):
            return value  # not JSON: the JsonValue check refuses it, naming the field
        if size > MAX_EQUALS_BYTES:
            raise ValueError(
                f"is {size:,} bytes as JSON; equals compares one value, at most "
                f"{MAX_EQUALS_BYTES:,} bytes"
            )
        return value

    @field_validator("dataset", "field", "key", "row", "job", "path", "equals", "min", "max")
    @classmethod
    def _fits_the_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Each kind's own fields, per field so the error names it (``checks[1].key``)."""
        kind = fits_kind(value, info, "check", USES, NEEDS)
        name = info.field_name
        if kind is None:
            return value
        if name == "row" and kind == "field_value":
            given = info.data.get("key") is not None, value is not None
            if all(given) or not any(given):
                raise ValueError("a field_value check needs key or row (one of them)")
        if name == "job" and value is not None:
            try:
                parse_job_ref(value)
            except InvalidJobId as error:
                raise ValueError(str(error)) from None
        if name == "max" and kind in COMPARING:
            lower, equals = info.data.get("min"), info.data.get("equals")
            if value is None and lower is None and equals is None:
                raise ValueError(f"a {kind} check needs equals, min or max")
            if value is not None and lower is not None and value < lower:
                raise ValueError(f"max {value} is below min {lower}")
        return value

    def label(self, index: int) -> str:
        """The case's name in results and errors."""
        return self.name or f"{index + 1}. {self.check}"


def expectation_problem(check: Check, actual: Any) -> str | None:
    """Why ``actual`` does not meet the check's ``equals``/``min``/``max``, or None."""
    if check.equals is not None and not same(actual, check.equals):
        return f"{excerpt(actual)} is not {excerpt(check.equals)}"
    if check.min is None and check.max is None:
        return None
    try:
        number = parse_decimal(actual)
    except ValueError:
        return f"{excerpt(actual)} is not a number, so it cannot be compared with min/max"
    if check.min is not None and number < check.min:
        return f"{excerpt(actual)} is below the minimum {check.min}"
    if check.max is not None and number > check.max:
        return f"{excerpt(actual)} is above the maximum {check.max}"
    return None


def same(actual: Any, expected: Any) -> bool:
    """Equal, numbers by value (a decimal column holds ``"12.50"``, a payload ``12.5``)."""
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return parse_decimal(actual) == parse_decimal(expected)
        except ValueError:
            return False
    return bool(actual == expected)


def result_value(result: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted ``path`` of a job's result (list items by index)."""
    value = result
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value
