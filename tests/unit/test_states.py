"""The status machine as pure logic: edges, terminal states, vocabularies, walks."""

from __future__ import annotations

import pytest

from app.ledger.rules.states import (
    LIVE,
    PREDECESSORS,
    TERMINAL,
    JobStatus,
    can_move,
    is_valid_walk,
    normalize,
)

S = JobStatus


def test_every_status_is_live_or_terminal_exactly_once() -> None:
    assert set(JobStatus) == LIVE | TERMINAL
    assert not LIVE & TERMINAL


def test_terminal_statuses_only_leave_through_a_manual_retry() -> None:
    for terminal in TERMINAL:
        targets = {target for target in JobStatus if can_move(terminal, target)}
        expected = {S.QUEUED} if terminal in (S.FAILED, S.CANCELED) else set()
        assert targets == expected, terminal


def test_succeeded_and_partial_are_final() -> None:
    assert not any(can_move(S.SUCCEEDED, t) for t in JobStatus)
    assert not any(can_move(S.PARTIAL, t) for t in JobStatus)


def test_running_never_goes_back_to_queued() -> None:
    assert not can_move(S.RUNNING, S.QUEUED)
    assert S.RUNNING not in PREDECESSORS[S.QUEUED]


def test_a_job_is_always_created_queued() -> None:
    assert can_move(None, S.QUEUED)
    assert not can_move(None, S.RUNNING)


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("STARTED", S.RUNNING),
        ("processing", S.RUNNING),
        ("Running", S.RUNNING),
        ("DONE", S.SUCCEEDED),
        ("success", S.SUCCEEDED),
        ("Completed", S.SUCCEEDED),
        ("SUCCESS", S.SUCCEEDED),
        ("ERROR", S.FAILED),
        ("error", S.FAILED),
        ("FAILED", S.FAILED),
        ("pending", S.QUEUED),
        ("Queued", S.QUEUED),
        ("PARTIAL_SUCCESS", S.PARTIAL),
        ("Cancelled", S.CANCELED),
    ],
)
def test_seed_vocabularies_map_onto_the_machine(word: str, status: JobStatus) -> None:
    assert normalize(word) is status


def test_an_unknown_status_word_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown job status 'paused'; known: .*queued"):
        normalize("paused")


def test_retry_and_redelivery_walks_are_valid() -> None:
    walk = [
        (None, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.RETRYING),
        (S.RETRYING, S.RUNNING),
        (S.RUNNING, S.FAILED),
        (S.FAILED, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
    ]
    assert is_valid_walk(walk)


@pytest.mark.parametrize(
    "walk",
    [
        [(S.QUEUED, S.RUNNING)],  # does not start at creation
        [(None, S.QUEUED), (S.RUNNING, S.SUCCEEDED)],  # disconnected
        [(None, S.QUEUED), (S.QUEUED, S.SUCCEEDED)],  # skips running
        [
            (None, S.QUEUED),
            (S.QUEUED, S.RUNNING),
            (S.RUNNING, S.SUCCEEDED),
            (S.SUCCEEDED, S.RUNNING),
        ],  # backwards from a final state
    ],
)
def test_invalid_walks_are_detected(walk: list[tuple[JobStatus | None, JobStatus]]) -> None:
    assert not is_valid_walk(walk)
