"""The side load of ``benchmarks.throughput``'s variant s (benchmarks/_side_load.py): a
fraction of one core, refused outside (0, 1); a process that burns CPU while the block
runs and is gone after it."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks._side_load import burn, side_load


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 1.5])
def test_a_side_load_is_a_fraction_of_one_core(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction of one core"):
        burn(fraction)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_side_load_burns_cpu_while_the_block_runs_and_stops_after() -> None:
    with side_load(0.5) as process:
        deadline = time.monotonic() + 30
        while _cpu_seconds(process.pid) < 0.2:  # it works, however slow the machine
            assert process.poll() is None, "the side load exited"
            assert time.monotonic() < deadline, "the side load used no CPU in 30 s"
            time.sleep(0.05)
    assert process.poll() is not None
