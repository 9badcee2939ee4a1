"""The tenant a job acts for is settled at ``delay()``: a payload ``tenant`` field agrees
with ``apply_async(tenant=…)`` or the job is refused, naming the field, with nothing
written. No worker needed: all of it happens in the producer."""

from __future__ import annotations

import pytest

from app.exceptions import InvalidPayload
from tasks import export_data, import_data, sync
from tests.support.api import job_count, unused_queue
from tests.support.ledger import job


def test_a_left_out_payload_tenant_is_recorded_as_the_jobs_tenant() -> None:
    result = import_data.apply_async(
        kwargs={"source": "a.csv", "dataset": "sales"}, tenant="acme", queue=unused_queue()
    )

    recorded = job(result.id)
    assert recorded is not None
    assert (recorded["tenant"], recorded["payload"]["tenant"]) == ("acme", "acme")


def test_the_same_tenant_in_payload_and_option_is_accepted() -> None:
    result = export_data.apply_async(
        kwargs={"dataset": "sales", "tenant": "acme"}, tenant="acme", queue=unused_queue()
    )

    recorded = job(result.id)
    assert recorded is not None
    assert recorded["tenant"] == "acme"


def test_a_tenant_option_that_is_no_tenant_name_is_refused_naming_tenant() -> None:
    with pytest.raises(InvalidPayload) as refused:
        export_data.apply_async(kwargs={"dataset": "sales"}, tenant="../etc")

    assert list(refused.value.fields) == ["tenant"]
    assert job_count() == 0


def test_a_bulk_payload_naming_another_tenant_refuses_the_whole_batch() -> None:
    with pytest.raises(InvalidPayload) as refused:
        import_data.apply_many(
            [
                {"source": "a.csv", "dataset": "sales"},
                {"source": "b.csv", "dataset": "sales", "tenant": "other"},
            ],
            tenant="acme",
        )

    assert list(refused.value.fields) == ["[1].tenant"]
    assert job_count() == 0


def test_a_tenant_option_of_a_type_without_tenant_field_is_checked_too() -> None:
    with pytest.raises(InvalidPayload) as refused:
        sync.apply_async(args=("household", "bank.csv"), tenant="a/b")

    assert list(refused.value.fields) == ["tenant"]
    assert job_count() == 0
