"""The purge's pacing (pure): batch sizes follow a target duration, pauses follow
batches."""

from __future__ import annotations

import pytest

from app.ledger.operations.purge_pacing import LONGEST_PAUSE_SECONDS, PurgePacing


def test_the_first_batch_is_the_largest_allowed() -> None:
    assert PurgePacing(largest=200, target_seconds=0.25, pause_factor=1).size == 200


def test_a_batch_over_the_target_shrinks_the_next_in_proportion() -> None:
    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=1)

    pacing.after(200, 1.0)

    assert pacing.size == 50


def test_quick_batches_grow_back_at_most_doubling_up_to_the_largest() -> None:
    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=1)
    pacing.after(200, 5.0)
    assert pacing.size == 10

    sizes = []
    for _ in range(6):
        pacing.after(pacing.size, 0.001)
        sizes.append(pacing.size)

    assert sizes == [20, 40, 80, 160, 200, 200]


def test_the_size_never_drops_below_one_job() -> None:
    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=1)

    pacing.after(1, 1000.0)

    assert pacing.size == 1


def test_a_target_of_zero_keeps_every_batch_at_the_largest() -> None:
    pacing = PurgePacing(largest=200, target_seconds=0, pause_factor=1)

    pacing.after(200, 30.0)

    assert pacing.size == 200


@pytest.mark.parametrize(("factor", "pause"), [(0, 0.0), (1, 0.4), (2.5, 1.0)])
def test_the_pause_is_the_factor_times_the_batch(factor: float, pause: float) -> None:
    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=factor)

    assert pacing.after(100, 0.4) == pytest.approx(pause)


def test_a_pause_never_exceeds_the_longest_pause() -> None:
    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=3)

    assert pacing.after(200, 100.0) == LONGEST_PAUSE_SECONDS


@pytest.mark.parametrize(
    "options",
    [
        {"largest": 0, "target_seconds": 0.25, "pause_factor": 1},
        {"largest": 10, "target_seconds": -1, "pause_factor": 1},
        {"largest": 10, "target_seconds": 0.25, "pause_factor": -0.5},
    ],
)
def test_impossible_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be >= "):
        PurgePacing(**options)  # type: ignore[arg-type]
