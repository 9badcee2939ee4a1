"""A side load: a process that keeps a fraction of one core busy, in 1 ms slices.

For ``benchmarks.throughput``'s variant **s**: plain Celery drained while this burns
beside it about as much CPU as the ledger adds per second (its pool processes'
bookkeeping, its PostgreSQL backends, the outcome writer), to see how much of the
ledger's gap on a small machine is just that CPU sharing the cores with Celery's
main process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

#: Seconds of each busy slice.
SLICE = 0.001
#: The environment variable giving the fraction variant s burns, and its default.
SETTING, DEFAULT = "JOBLEDGER_BENCH_SIDE_LOAD", "0.3"


def checked(fraction: float) -> float:
    """``fraction``, if it is a fraction of one core in (0, 1)."""
    if not 0 < fraction < 1:
        raise ValueError(f"a side load is a fraction of one core in (0, 1), not {fraction}")
    return fraction


def configured() -> float:
    """The fraction ``JOBLEDGER_BENCH_SIDE_LOAD`` asks for (default 0.3)."""
    value = os.environ.get(SETTING, DEFAULT)
    try:
        return checked(float(value))
    except ValueError as error:
        raise ValueError(f"{SETTING}={value!r}: {error}") from None


def burn(fraction: float) -> None:
    """Keep ``fraction`` of one core busy, forever: busy ``SLICE``, then sleep the rest."""
    rest = SLICE * (1 - checked(fraction)) / fraction
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < SLICE:
            pass
        time.sleep(rest)


@contextlib.contextmanager
def side_load(fraction: float) -> Iterator[subprocess.Popen[bytes]]:
    """A process burning ``fraction`` of one core while the block runs.

    Raises:
        RuntimeError: the process ended before the block did (what the block measured
            ran without its side load).
    """
    command = [sys.executable, "-m", "benchmarks._side_load", str(checked(fraction))]
    process = subprocess.Popen(command)
    try:
        yield process
        if process.poll() is not None:
            raise RuntimeError(f"the side load exited early (status {process.returncode})")
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    burn(float(sys.argv[1]))
