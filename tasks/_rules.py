"""Validation rules of the ``validation`` job type: their definitions (checked at
``delay()``) and what each one says about one value. Pure: no database, no ledger.

Usage::

    rule = Rule(rule="pattern", field="code", pattern=r"^[A-Z]{3}-\\d+$")
    rule.problem(row["code"])       # None when the value passes, else a user-safe reason

    seen = Uniqueness(rule)         # across the rows of one dataset (16 bytes per value)
    seen.problem(row["email"], 7)   # "duplicate of row 3" the second time a value comes

The six rules (``rule`` names the kind, ``field`` the column it checks):

- ``required``: the value is present and not blank.
- ``type``: the value parses as ``type`` (``str``, ``int``, ``float``, ``decimal``,
  ``date``, ``bool``, the import's column types).
- ``range``: the value is a number within ``min`` and/or ``max`` (inclusive).
- ``pattern``: the value, as text, contains a match of ``pattern`` (anchor it with ``^…$``
  to match the whole value, as JSON Schema's ``pattern`` does).
- ``unique`` (or ``uniqueness``): no two rows have the same value.
- ``reference``: the value is one of the values of ``column`` (default: the same name)
  in another dataset of the tenant, ``dataset``.

Every rule but ``required`` passes over an empty value: pair it with ``required`` to
demand one. A field a kind does not use is refused, so a typo (``max`` on a ``pattern``
rule) is not silently ignored.

Patterns are compiled by RE2 (google-re2), not Python's ``re``: RE2 matches in time
linear in the value's length whatever the pattern (no backtracking), so a pattern such as
``(a+)+$`` cannot stall a worker on a long value (catastrophic backtracking). RE2 has no
backreferences nor lookaround: such a pattern is refused at ``delay()``, naming the field.
Its compiled program is bounded too (:data:`PATTERN_MEMORY`), so ``a{1000}{1000}`` is
refused rather than built. The value is matched whole, bounded only by what a dataset row
may hold.
"""

from __future__ import annotations

import functools
import hashlib
from decimal import Decimal
from typing import Annotated, Any, Literal

import re2
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from tasks._fields import DatasetName, KindItem, fits_kind
from tasks._values import ColumnType, excerpt, is_empty, parse, parse_decimal

RuleKind = Literal["required", "type", "range", "pattern", "unique", "reference"]
#: A column name as a dataset holds it.
FieldName = Annotated[str, Field(min_length=1, max_length=128)]
#: Longest pattern accepted.
MAX_PATTERN = 1000
#: Bytes RE2 may use for one compiled pattern (its own default is 8 MiB).
PATTERN_MEMORY = 1 << 20

#: The fields each kind uses beyond ``rule`` and ``field``; any other is refused.
USES: dict[str, frozenset[str]] = {
    "required": frozenset(),
    "type": frozenset({"type"}),
    "range": frozenset({"min", "max"}),
    "pattern": frozenset({"pattern"}),
    "unique": frozenset(),
    "reference": frozenset({"dataset", "column"}),
}
#: The fields a kind cannot do without (``range`` needs one of min/max: checked apart).
NEEDS: dict[str, frozenset[str]] = {
    "type": frozenset({"type"}),
    "pattern": frozenset({"pattern"}),
    "reference": frozenset({"dataset"}),
}


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The RE2 program of ``pattern`` (compiled once per process and pattern);
    ``ValueError`` with RE2's reason when it has none."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print its reason to stderr too
    options.max_mem = PATTERN_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"not a valid regular expression for RE2 ({reason}); RE2 has no "
            "backreferences or lookaround, which is what keeps matching linear in time"
        ) from None


def _kind_name(value: Any) -> Any:
    """``uniqueness`` (the word the commissioning tool uses) is the ``unique`` rule."""
    return "unique" if value == "uniqueness" else value


class Rule(KindItem):
    """One validation rule (see the module docstring for each kind)."""

    rule: Annotated[RuleKind, BeforeValidator(_kind_name)]
    field: FieldName
    type: ColumnType | None = Field(default=None, validate_default=True)
    min: Decimal | None = Field(default=None, validate_default=True, allow_inf_nan=False)
    max: Decimal | None = Field(default=None, validate_default=True, allow_inf_nan=False)
    pattern: Annotated[str, Field(min_length=1, max_length=MAX_PATTERN)] | None = Field(
        default=None, validate_default=True
    )
    dataset: DatasetName | None = Field(default=None, validate_default=True)
    column: FieldName | None = Field(default=None, validate_default=True)

    @field_validator("type", "min", "max", "pattern", "dataset", "column")
    @classmethod
    def _fits_the_kind(cls, value: Any, info: ValidationInfo) -> Any:
        """Each kind's own fields: present when it needs them, absent when it does not use
        them. Checked per field so the error names it (``rules[2].pattern``)."""
        kind = fits_kind(value, info, "rule", USES, NEEDS)
        name = info.field_name
        if kind is None or value is None:
            if name == "max" and kind == "range" and info.data.get("min") is None:
                raise ValueError("a range rule needs min, max or both")
            return value
        if name == "pattern":
            compile_pattern(value)
        if name == "max" and info.data.get("min") is not None and value < info.data["min"]:
            raise ValueError(f"max {value} is below min {info.data['min']}")
        return value

    @property
    def label(self) -> str:
        """How results and errors name the rule: ``pattern(code)``."""
        return f"{self.rule}({self.field})"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks this rule, or None. For ``unique`` and ``reference`` the
        answer depends on other rows: see :class:`Uniqueness` and :func:`reference_problem`."""
        if self.rule == "required":
            return "required value is missing" if is_empty(value) else None
        if is_empty(value) or self.rule in ("unique", "reference"):
            return None
        if self.rule == "type":
            assert self.type is not None  # checked by the model
            try:
                parse(self.type, value)
            except ValueError as error:
                return str(error)
            return None
        if self.rule == "range":
            return self._range_problem(value)
        return self._pattern_problem(value)

    def _range_problem(self, value: Any) -> str | None:
        try:
            number = parse_decimal(value)
        except ValueError as error:
            return str(error)
        if self.min is not None and number < self.min:
            return f"{excerpt(value)} is below the minimum {self.min}"
        if self.max is not None and number > self.max:
            return f"{excerpt(value)} is above the maximum {self.max}"
        return None

    def _pattern_problem(self, value: Any) -> str | None:
        text = value if isinstance(value, str) else canonical(value)
        if compile_pattern(str(self.pattern)).search(text) is None:
            return f"{excerpt(value)} does not match the pattern {self.pattern!r}"
        return None


def canonical(value: Any) -> str:
    """A value as uniqueness and references compare it: text as it is, numbers by their
    value (``1``, ``1.0`` and ``"1"`` are one value: a CSV import holds text where a typed
    one holds numbers), booleans as ``true``/``false``, anything else as JSON-ish text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = parse_decimal(value).normalize()
        return format(number, "f")
    return value if isinstance(value, str) else repr(value)


def fingerprint(value: Any) -> bytes:
    """What uniqueness and references remember of a value: 16 bytes (BLAKE2b of its
    :func:`canonical` text, :mod:`hashlib`'s), whatever its length. Both hold one entry per
    row of a dataset, and a row may hold a megabyte: the values themselves would be the
    dataset in the worker's memory. Two different values sharing a 128-bit digest is not
    a risk worth a byte more (2^64 values before one collision is even likely)."""
    text = canonical(value).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


class Uniqueness:
    """The values of one ``unique`` rule seen so far (their :func:`fingerprint`), each
    with the row that had it first."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.first: dict[bytes, int] = {}

    def problem(self, value: Any, row: int) -> str | None:
        """None the first time a value comes; ``duplicate of row N`` after that."""
        if is_empty(value):
            return None
        earlier = self.first.setdefault(fingerprint(value), row)
        if earlier == row:
            return None
        return f"{excerpt(value)} is a duplicate of row {earlier}"


def reference_problem(rule: Rule, value: Any, known: set[bytes]) -> str | None:
    """Why ``value`` is not among the referenced dataset's values (``known``, their
    :func:`fingerprint`)."""
    if is_empty(value) or fingerprint(value) in known:
        return None
    return f"{excerpt(value)} is not a {rule.column or rule.field} of dataset {rule.dataset!r}"
