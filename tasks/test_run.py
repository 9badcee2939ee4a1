"""Job type ``test_run``: run a test scenario, an ordered list of checks over the
tenant's datasets and previous jobs, and report pass or fail per case with the reason.

Usage::

    from tasks import test_run

    test_run.delay(
        scenario="plant-a-fat",
        checks=[
            {"check": "job_succeeded", "job": import_job_id, "name": "tags imported"},
            {"check": "row_count", "dataset": "tags", "min": 1, "max": 5000},
            {"check": "field_value", "dataset": "tags", "key": "P-101", "field": "status",
             "equals": "ready"},
            {"check": "job_result", "job": validation_job_id, "path": "rows_failed",
             "equals": 0},
        ],
    )

The checks are :class:`tasks._checks.Check` (each kind there); a bad one is refused at
``delay()``/the API naming it (``checks[1].key``). They run in order, with a cancel check
before each. The result is ``{"scenario", "cases": [{"index", "name", "check", "passed",
"reason"}], "passed", "failed"}``:

- every case passes: ``succeeded``;
- a case fails (a count out of range, a row that is not there, a value that differs, a
  job that did not succeed, a result without the path): it is an item error
  ``{"case", "name", "check", "message"}``, the next cases still run, and the job ends
  ``partial``;
- a case cannot run (a dataset that does not exist, a job that is not found — another
  tenant's job is not found either, with the same words, as if it did not exist): the
  job ends ``failed``, its reason naming the case and field
  (``checks[2].dataset``); the cases after it do not run.

A test run only reads: it writes nothing but its own ledger row.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.exceptions import JobFailed
from app.ledger.reads.tenant_jobs import tenant_job
from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task
from tasks import _store
from tasks._checks import Check, expectation_problem, result_value
from tasks._fields import NAME_PATTERN, Tenant

#: Most checks one scenario holds.
MAX_CHECKS = 200


class TestRunPayload(JobPayload):
    """What ``test_run.delay(...)`` takes."""

    __test__ = False  # not a pytest test class, whatever its name

    #: The scenario's name (the job's subject).
    scenario: str = Field(pattern=NAME_PATTERN)
    #: The cases, run in this order.
    checks: list[Check] = Field(min_length=1, max_length=MAX_CHECKS)
    #: The job's tenant, whose datasets and jobs the checks read (filled in like import's).
    tenant: Tenant = "default"


class CaseError(Exception):
    """A case could not run; ``str()`` is the user-safe reason, ``field`` what it names."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


@job_task("test_run", TestRunPayload, subject="scenario", queue="tests")
def test_run(job: JobContext, payload: TestRunPayload) -> dict[str, Any]:
    """Run ``payload.checks`` in order (see the module docstring)."""
    tenant = job.tenant_of(payload.tenant)
    cases: list[dict[str, Any]] = []
    job.log(f"scenario {payload.scenario}: {len(payload.checks)} cases")
    for index, check in enumerate(payload.checks):
        job.check_canceled()
        name = check.label(index)
        try:
            reason = _run(tenant, check)
        except CaseError as error:
            field = f"checks[{index}].{error.field}"
            raise JobFailed(
                f"case {name!r} could not run: field {field!r}: {error}",
                errors=[
                    *job.errors,
                    {
                        "case": index,
                        "name": name,
                        "check": check.check,
                        "field": field,
                        "message": str(error),
                    },
                ],
            ) from None
        passed = reason is None
        cases.append(
            {
                "index": index,
                "name": name,
                "check": check.check,
                "passed": passed,
                "reason": reason or "passed",
            }
        )
        if reason is not None:
            job.add_error(reason, case=index, name=name, check=check.check)
        job.log(f"case {name}: {'passed' if reason is None else 'FAILED: ' + reason}")
        job.progress(100 * (index + 1) / len(payload.checks), f"{index + 1} cases run")
    total = sum(case["passed"] for case in cases)
    return {
        "scenario": payload.scenario,
        "cases": cases,
        "passed": total,
        "failed": len(cases) - total,
    }


test_run.__test__ = False  # a task, not a pytest test, wherever a test module imports it


def _run(tenant: str, check: Check) -> str | None:
    """Why the case fails, or None when it passes.

    Raises:
        CaseError: it cannot run.
    """
    if check.check == "row_count":
        return expectation_problem(check, _dataset(tenant, check).rows)
    if check.check == "field_value":
        return _field_value(tenant, check)
    assert check.job is not None  # checked by the model
    found = tenant_job(tenant, check.job)
    if found is None:
        raise CaseError("job", f"job {check.job} not found")
    if check.check == "job_succeeded":
        if found["status"] == "succeeded":
            return None
        why = f": {found['failure_reason']}" if found.get("failure_reason") else ""
        return f"job {check.job} is {found['status']}, not succeeded{why}"
    assert check.path is not None  # checked by the model
    present, value = result_value(found["result"], check.path)
    if not present:
        return f"job {check.job} ({found['status']}) has no result value at {check.path!r}"
    return expectation_problem(check, value)


def _dataset(tenant: str, check: Check) -> _store.DatasetInfo:
    assert check.dataset is not None  # checked by the model
    found = _store.find_dataset(tenant, check.dataset)
    if found is None:
        raise CaseError("dataset", f"dataset {check.dataset!r} does not exist")
    return found


def _field_value(tenant: str, check: Check) -> str | None:
    dataset = _dataset(tenant, check)
    assert check.field is not None  # checked by the model
    data = _store.dataset_row(tenant, dataset.id, key=check.key, position=check.row)
    if data is None:
        if check.key is not None:
            return f"dataset {check.dataset!r} has no row with key {check.key!r}"
        return f"dataset {check.dataset!r} has no row {check.row} (it has {dataset.rows})"
    if check.field not in data:
        return f"row has no field {check.field!r}"
    return expectation_problem(check, data[check.field])
