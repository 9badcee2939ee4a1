"""Job type ``validation``: run a set of validation rules over a dataset of the tenant.

Usage::

    from tasks import validation

    validation.delay(
        dataset="tags",
        rules=[
            {"rule": "required", "field": "tag"},
            {"rule": "pattern", "field": "tag", "pattern": r"^[A-Z]{2}-\\d{3}$"},
            {"rule": "type", "field": "rated_kw", "type": "decimal"},
            {"rule": "range", "field": "rated_kw", "min": 0, "max": 500},
            {"rule": "unique", "field": "tag"},
            {"rule": "reference", "field": "area", "dataset": "areas", "column": "code"},
        ],
    )

The rules are :class:`tasks._rules.Rule` (each kind, and why patterns use RE2, there). A
bad rule is refused at ``delay()``/the API naming it (``rules[2].pattern``); one that only
the data can show wrong (a column the dataset has never had, a referenced dataset that
does not exist) fails the job before any row is read, naming the rule the same way.

Each row and rule that fails is an item error ``{"row", "field", "rule", "rule_index",
"message"}`` (``row``: the row's position in the dataset, import order, 1 first; ``key``
too when the row has one) and the job ends ``partial``; a dataset that passes every rule
ends ``succeeded``. The result counts failures per rule (``rules``, in the payload's order,
and ``failed_by_rule`` per kind) and rows (``rows``, ``rows_failed``): the counts are
complete even past the 1000 item errors the ledger keeps.

Validation only reads: it writes nothing but its own ledger row, so a canceled (checked
every ``batch_size`` rows) or failed validation leaves nothing behind, and running it
again gives the same answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.exceptions import JobFailed
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._fields import DatasetName, Tenant
from tasks._rules import Rule, Uniqueness, fingerprint, reference_problem

#: Most rules one validation runs.
MAX_RULES = 200


class ValidationPayload(JobPayload):
    """What ``validation.delay(...)`` takes."""

    #: The dataset to validate (one the tenant imported).
    dataset: DatasetName
    #: The rules, run on every row in this order.
    rules: list[Rule] = Field(min_length=1, max_length=MAX_RULES)
    #: The job's tenant, whose datasets these are (filled in like import's).
    tenant: Tenant = "default"
    #: Rows between two progress reports and cancel checks.
    batch_size: int = Field(default=500, ge=1, le=10_000)


@job_task("validation", ValidationPayload, subject="dataset", queue="validation")
def validation(job: JobContext, payload: ValidationPayload) -> dict[str, Any]:
    """Validate ``payload.dataset`` against ``payload.rules`` (see the module docstring)."""
    tenant = job.tenant_of(payload.tenant)
    found = _store.find_dataset(tenant, payload.dataset)
    if found is None:
        raise JobFailed(f"field 'dataset': tenant {tenant!r} has no dataset {payload.dataset!r}")
    _check_columns(payload.rules, payload.dataset, found.columns)
    known = _referenced_values(job, tenant, payload.rules)
    uniques = {i: Uniqueness(rule) for i, rule in enumerate(payload.rules) if rule.rule == "unique"}
    failed = [0] * len(payload.rules)
    rows = rows_failed = 0
    job.log(f"validating {found.rows} rows of {payload.dataset} against {len(payload.rules)} rules")
    for rows, (key, data) in enumerate(_store.keyed_dataset_rows(tenant, found.id), 1):
        job.tick()
        bad = False
        for index, rule in enumerate(payload.rules):
            value = data.get(rule.field)
            if index in uniques:
                problem = uniques[index].problem(value, rows)
            elif index in known:
                problem = reference_problem(rule, value, known[index])
            else:
                problem = rule.problem(value)
            if problem is None:
                continue
            bad, failed[index] = True, failed[index] + 1
            where = {"row": rows, "field": rule.field, "rule": rule.rule, "rule_index": index}
            job.add_error(problem, **where, **({"key": key} if key is not None else {}))
        rows_failed += bad
        if rows % payload.batch_size == 0:
            job.check_canceled()
            job.progress(99 * rows / max(found.rows, 1), f"{rows} rows validated")
    by_kind: dict[str, int] = {}
    for rule, count in zip(payload.rules, failed, strict=True):
        by_kind[rule.rule] = by_kind.get(rule.rule, 0) + count
    job.log(f"done: {rows} rows, {rows_failed} failed at least one rule")
    return {
        "dataset": payload.dataset,
        "rows": rows,
        "rows_failed": rows_failed,
        "rules": [
            {"index": i, "rule": rule.rule, "field": rule.field, "failed": count}
            for i, (rule, count) in enumerate(zip(payload.rules, failed, strict=True))
        ],
        "failed_by_rule": by_kind,
    }


def _check_columns(rules: list[Rule], dataset: str, columns: list[str]) -> None:
    """A rule on a column the dataset has never had is a mistake in the rule (a typo would
    otherwise pass every row): fail naming it, before any row is read."""
    for index, rule in enumerate(rules):
        if rule.field not in columns:
            raise JobFailed(
                f"field 'rules[{index}].field': dataset {dataset!r} has no column "
                f"{rule.field!r} (its columns: {', '.join(columns) or 'none'})"
            )


def _referenced_values(job: JobContext, tenant: str, rules: list[Rule]) -> dict[int, set[bytes]]:
    """For each ``reference`` rule (by index), the values of its column in the referenced
    dataset of the same tenant (their fingerprints: 16 bytes each, however long)."""
    known: dict[int, set[bytes]] = {}
    for index, rule in enumerate(rules):
        if rule.rule != "reference":
            continue
        assert rule.dataset is not None  # checked by the model
        column = rule.column or rule.field
        target = _store.find_dataset(tenant, rule.dataset)
        if target is None:
            raise JobFailed(
                f"field 'rules[{index}].dataset': tenant {tenant!r} has no dataset "
                f"{rule.dataset!r} to check references against"
            )
        if column not in target.columns:
            name = "column" if rule.column else "field"
            raise JobFailed(
                f"field 'rules[{index}].{name}': dataset {rule.dataset!r} has no column {column!r}"
            )
        values: set[bytes] = set()
        for data in _store.dataset_rows(tenant, target.id):
            job.tick()
            value = data.get(column)
            if value is not None:
                values.add(fingerprint(value))
        known[index] = values
    return known
