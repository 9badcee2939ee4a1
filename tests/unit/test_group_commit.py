"""The pool process's half of the group commit (app.ledger.runtime.group_commit), pure
logic: which message may hand its outcome, and what the wrapped tracer returns to the
pool (Celery's own trace result type)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from celery.app.trace import trace_ok_t

from app.ledger.runtime import group_commit
from app.ledger.runtime.group_commit import HandedOutcome

OUTCOME = HandedOutcome(
    "0b3f5a2e-6d0c-4a55-9f0e-3f1f2b2c9d11",
    "e1",
    "succeeded",
    ("id", "e1", "t", "succeeded", "w1", 10, None, "{}", "[]", None,
     datetime(2026, 12, 1, tzinfo=UTC), "started on w1", "succeeded", "queued"),
)  # fmt: skip


def test_only_the_message_being_traced_may_hand_its_outcome_once() -> None:
    assert not group_commit.may_hand("t1")  # no trace under way: an eager apply()
    seen: dict[str, bool] = {}

    def trace(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
        seen["own"] = group_commit.may_hand(uuid)
        seen["other"] = group_commit.may_hand("another")
        group_commit.hand(OUTCOME)
        seen["twice"] = group_commit.may_hand(uuid)
        return trace_ok_t({"ok": 1}, None, 0.01, "{'ok': 1}")

    group_commit._traced(trace)("t1", (), {})

    assert seen == {"own": True, "other": False, "twice": False}
    assert not group_commit.may_hand("t1")  # the trace is over


def test_a_handed_outcome_travels_in_place_of_the_return_value_s_repr() -> None:
    def trace(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
        group_commit.hand(OUTCOME)
        return trace_ok_t({"ok": 1}, None, 0.01, "{'ok': 1}")

    traced = group_commit._traced(trace)("t1", (), {})

    assert (traced.retval, traced.info, traced.runtime) == ({"ok": 1}, None, 0.01)
    handed = traced.retstr
    assert isinstance(handed, HandedOutcome)
    assert handed.result_repr == "{'ok': 1}"  # what Celery's event and log show
    assert (handed.job_id, handed.execution_id, handed.row) == (
        OUTCOME.job_id,
        OUTCOME.execution_id,
        OUTCOME.row,
    )
    assert pickle.loads(pickle.dumps(handed)) == handed  # the pool pickles it


def test_a_trace_that_handed_nothing_is_returned_as_it_is() -> None:
    result = trace_ok_t(None, None, 0.01, "None")
    assert group_commit._traced(lambda *_: result)("t1", (), {}) is result


def test_a_trace_that_raises_leaves_nothing_behind() -> None:
    def trace(uuid: str, args: Any, kwargs: Any, request: Any = None) -> Any:
        group_commit.hand(OUTCOME)
        raise RuntimeError("pool broke")

    with pytest.raises(RuntimeError):
        group_commit._traced(trace)("t1", (), {})
    assert not group_commit.may_hand("t1")
    assert group_commit._handed is None
