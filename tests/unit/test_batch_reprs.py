"""A batch's reprs (``argsrepr``/``kwargsrepr``), made once per distinct payload, are
each job's own: what :func:`~app.ledger.runtime.celery_redaction.payload_reprs` gives it."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.ledger.runtime.batch import Item, _Reprs
from app.ledger.runtime.celery_redaction import payload_reprs
from tests.support.jobs import echo

#: JSON documents, as ``model_dump(mode="json")`` gives them: values that print alike
#: in other types (``1``, ``1.0``, ``True``, ``"1"``) included.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
PAYLOADS = st.dictionaries(st.sampled_from(["value", "password", "url", "n"]), JSON, max_size=3)


def item(**options: Any) -> Item:
    return Item(echo, {}, {}, options, 0, {})


@settings(deadline=None)  # a correctness property, not a timing: the first example pays the imports
@given(st.lists(PAYLOADS, max_size=6), st.lists(st.integers(0, 5), max_size=12))
def test_each_job_gets_the_reprs_of_its_own_payload(
    distinct: list[dict[str, Any]], picks: list[int]
) -> None:
    payloads = [distinct[n % len(distinct)] for n in picks] if distinct else []
    reprs, plain = _Reprs(), item()
    for payload in [*payloads, {"n": 1}, {"n": 1.0}, {"n": True}, {"n": "1"}, {"n": 1}]:
        assert reprs(plain, payload) == payload_reprs(echo.app, (), payload, plain.options)


def test_a_caller_s_own_reprs_are_kept_apart_from_the_made_ones() -> None:
    reprs, payload = _Reprs(), {"value": 1}
    own = item(kwargsrepr="{'value': 'shown', 'token': 'ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2'}")
    assert reprs(item(), payload)["kwargsrepr"] == "{'value': 1}"
    assert reprs(own, payload) == payload_reprs(echo.app, (), payload, own.options)
    assert "ghp_" not in reprs(own, payload)["kwargsrepr"]
    assert reprs(item(), payload)["kwargsrepr"] == "{'value': 1}"
