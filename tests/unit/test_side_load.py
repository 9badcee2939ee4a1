"""The side load of ``benchmarks.throughput``'s variant s (benchmarks/_side_load.py): a
fraction of one core, refused outside (0, 1) and before any process starts, with the
setting named; a process that burns CPU while the block runs and is gone after it; a
side load that died mid-block makes the block fail instead of measuring without it."""

from __future__ import annotations

import time

import pytest

from benchmarks._proc import cpu_ms
from benchmarks._side_load import burn, configured, side_load


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 1.5])
def test_a_side_load_is_a_fraction_of_one_core(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction of one core"):
        burn(fraction)
    with pytest.raises(ValueError, match="fraction of one core"), side_load(fraction):
        pytest.fail("a side load outside (0, 1) started")


@pytest.mark.parametrize("value", ["abc", "2", ""])
def test_a_bad_setting_names_itself(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("JOBLEDGER_BENCH_SIDE_LOAD", value)
    with pytest.raises(ValueError, match="JOBLEDGER_BENCH_SIDE_LOAD="):
        configured()


def test_the_setting_defaults_to_three_tenths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBLEDGER_BENCH_SIDE_LOAD", raising=False)
    assert configured() == 0.3
    monkeypatch.setenv("JOBLEDGER_BENCH_SIDE_LOAD", "0.45")
    assert configured() == 0.45


def test_the_side_load_burns_cpu_while_the_block_runs_and_stops_after() -> None:
    with side_load(0.5) as process:
        deadline = time.monotonic() + 30
        while cpu_ms(process.pid) < 200:  # it works, however slow the machine
            assert process.poll() is None, "the side load exited"
            assert time.monotonic() < deadline, "the side load used no CPU in 30 s"
            time.sleep(0.05)
    assert process.poll() is not None


def _kill_it_inside_the_block() -> None:
    with side_load(0.5) as process:
        process.kill()
        process.wait()


def test_a_side_load_that_died_fails_the_block() -> None:
    with pytest.raises(RuntimeError, match="exited early"):
        _kill_it_inside_the_block()
