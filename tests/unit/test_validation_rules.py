"""The pure logic of ``validation`` rules and ``test_run`` checks: their definitions as
``delay()`` checks them, and the verdict on one value."""

from __future__ import annotations

import time
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest

from app.exceptions import InvalidPayload
from tasks._checks import Check, expectation_problem, result_value, same
from tasks._rules import Rule, Uniqueness, fingerprint, reference_problem
from tasks._values import excerpt
from tasks.test_run import test_run as scenario_task
from tasks.validation import validation


def refused(task: Any, **payload: Any) -> dict[str, str]:
    with pytest.raises(InvalidPayload) as raised:
        task.validate_payload((), payload)
    return raised.value.fields


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"rule": "pattern", "field": "a", "pattern": "(a)\\1"}, "pattern", "not a valid"),
        ({"rule": "pattern", "field": "a", "pattern": "(?=a)"}, "pattern", "lookaround"),
        ({"rule": "pattern", "field": "a", "pattern": "a{1000}{1000}"}, "pattern", "RE2"),
        ({"rule": "pattern", "field": "a"}, "pattern", "needs pattern"),
        ({"rule": "type", "field": "a"}, "type", "needs type"),
        ({"rule": "type", "field": "a", "type": "money"}, "type", "Input should be"),
        ({"rule": "range", "field": "a"}, "max", "needs min, max or both"),
        ({"rule": "range", "field": "a", "min": 5, "max": 1}, "max", "below min"),
        ({"rule": "range", "field": "a", "min": "NaN", "max": 3}, "min", ""),
        ({"rule": "unique", "field": "a", "pattern": "x"}, "pattern", "does not use pattern"),
        ({"rule": "reference", "field": "a"}, "dataset", "needs dataset"),
        ({"rule": "required", "field": ""}, "field", "at least 1"),
        ({"rule": "bogus", "field": "a"}, "rule", "Input should be"),
        ({"rule": "required", "field": "a", "typo": 1}, "typo", "Extra inputs"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    rule: dict[str, Any], field: str, words: str
) -> None:
    rules = [{"rule": "required", "field": "ok"}, {"rule": "unique", "field": "ok"}, rule]

    fields = refused(validation, dataset="tags", rules=rules)

    assert list(fields) == [f"rules[2].{field}"]
    assert words in fields[f"rules[2].{field}"]


def test_payload_level_mistakes_name_their_fields() -> None:
    assert set(refused(validation, dataset="../x", rules=[])) == {"dataset", "rules"}
    assert "rules" in refused(
        validation, dataset="x", rules=[{"rule": "required", "field": "a"}] * 201
    )


def test_a_pattern_that_backtracks_catastrophically_in_re_is_linear_in_re2() -> None:
    """``(a+)+$`` on 'aaa…b' takes Python's re exponential time (30 a's: minutes); RE2
    answers at once even for 100,000 characters."""
    rule = Rule(rule="pattern", field="a", pattern="^(a+)+$")
    began = time.monotonic()

    problem = rule.problem("a" * 100_000 + "b")

    assert problem is not None
    assert "does not match" in problem
    assert time.monotonic() - began < 1


@pytest.mark.parametrize(
    ("rule", "value", "passes"),
    [
        ({"rule": "required"}, "x", True),
        ({"rule": "required"}, "  ", False),
        ({"rule": "required"}, None, False),
        ({"rule": "type", "type": "int"}, "12", True),
        ({"rule": "type", "type": "int"}, "12.5", False),
        ({"rule": "type", "type": "date"}, "2024-02-30", False),
        ({"rule": "type", "type": "int"}, None, True),  # empty: required's business
        ({"rule": "range", "min": 0, "max": 10}, "10", True),
        ({"rule": "range", "min": 0, "max": 10}, 10.5, False),
        ({"rule": "range", "min": 0}, "-0.01", False),
        ({"rule": "range", "max": 3}, "three", False),
        ({"rule": "pattern", "pattern": "^[A-Z]{2}-\\d{3}$"}, "PT-101", True),
        ({"rule": "pattern", "pattern": "^[A-Z]{2}-\\d{3}$"}, "pt-101", False),
        ({"rule": "pattern", "pattern": "^\\d+$"}, 42, True),
    ],
)
def test_one_value_against_one_rule(rule: dict[str, Any], value: Any, passes: bool) -> None:
    problem = Rule(field="f", **rule).problem(value)

    assert (problem is None) is passes, problem


def test_uniqueness_names_the_first_row_and_counts_numbers_by_value() -> None:
    seen = Uniqueness(Rule(rule="unique", field="id"))

    verdicts = [
        seen.problem(value, row) for row, value in enumerate([1, "2", "1", 2.0, None, None], 1)
    ]

    assert verdicts[:2] == [None, None]
    assert verdicts[2] is not None
    assert "duplicate of row 1" in verdicts[2]
    assert verdicts[3] is not None
    assert "duplicate of row 2" in verdicts[3]
    assert verdicts[4:] == [None, None]  # empty values are not duplicates


def test_uniqueness_holds_a_fixed_size_per_value_however_long_the_values() -> None:
    """A unique rule remembers every value of the dataset: 200 values of 100 KB (a dataset
    row may hold 1 MiB) must not stay 20 MB in the worker's memory, only a few bytes
    each."""
    seen = Uniqueness(Rule(rule="unique", field="note"))
    tracemalloc.start()
    try:
        for row in range(1, 201):
            assert seen.problem(f"{row:06d}" + "x" * 100_000, row) is None
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert held < 1_000_000, held
    assert seen.problem("000007" + "x" * 100_000, 201) == (
        f"{excerpt('000007' + 'x' * 100_000)} is a duplicate of row 7"
    )


def test_uniqueness_is_the_unique_rule() -> None:
    assert Rule(rule="uniqueness", field="id").rule == "unique"


def test_reference_compares_canonical_values() -> None:
    rule = Rule(rule="reference", field="area", dataset="areas", column="code")
    known = {fingerprint(v) for v in ["A1", 7, "8.0"]}

    assert reference_problem(rule, "A1", known) is None
    assert reference_problem(rule, "7", known) is None
    assert reference_problem(rule, "", known) is None
    problem = reference_problem(rule, "B2", known)
    assert problem is not None
    assert "not a code of dataset 'areas'" in problem


@pytest.mark.parametrize(
    ("check", "field", "words"),
    [
        ({"check": "row_count", "dataset": "d"}, "max", "needs equals, min or max"),
        ({"check": "row_count", "min": 1}, "dataset", "needs dataset"),
        ({"check": "row_count", "dataset": "d", "min": 1, "job": "x"}, "job", "does not use"),
        ({"check": "field_value", "dataset": "d", "field": "f", "equals": 1}, "row", "key or row"),
        (
            {
                "check": "field_value",
                "dataset": "d",
                "field": "f",
                "key": "k",
                "row": 2,
                "equals": 1,
            },
            "row",
            "key or row",
        ),
        ({"check": "job_succeeded", "job": "not-a-job"}, "job", "not a job id"),
        ({"check": "job_result", "job": "20261130120000", "equals": 1}, "path", "needs path"),
        (
            {"check": "job_result", "job": "20261130120000", "path": "a..b", "equals": 1},
            "path",
            "pattern",
        ),
        ({"check": "row_count", "dataset": "d", "min": 3, "max": 1}, "max", "below min"),
    ],
)
def test_bad_checks_are_refused_naming_the_field(
    check: dict[str, Any], field: str, words: str
) -> None:
    fields = refused(scenario_task, scenario="s1", checks=[check])

    assert list(fields) == [f"checks[0].{field}"]
    assert words in fields[f"checks[0].{field}"]


@pytest.mark.parametrize(
    ("expect", "actual", "passes"),
    [
        ({"equals": 12.5}, "12.50", True),
        ({"equals": "ready"}, "ready", True),
        ({"equals": "ready"}, "Ready", False),
        ({"equals": 3}, "three", False),
        ({"min": 1, "max": 5}, 5, True),
        ({"min": 1, "max": 5}, 6, False),
        ({"min": 1}, "x", False),
        ({"equals": True}, True, True),
    ],
)
def test_expectations(expect: dict[str, Any], actual: Any, passes: bool) -> None:
    check = Check(check="field_value", dataset="d", field="f", row=1, **expect)

    assert (expectation_problem(check, actual) is None) is passes


def test_result_paths() -> None:
    result = {"totals": {"rows": 3}, "cases": [{"passed": True}]}

    assert result_value(result, "totals.rows") == (True, 3)
    assert result_value(result, "cases.0.passed") == (True, True)
    assert result_value(result, "cases.1.passed") == (False, None)
    assert result_value(None, "rows") == (False, None)
    assert same(Decimal("1.0"), 1)
