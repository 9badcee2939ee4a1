"""A side load: a process that keeps a fraction of one core busy, in 1 ms slices.

For ``benchmarks.throughput``'s variant **s**: plain Celery drained while this burns
beside it about as much CPU as the ledger adds per second (its pool processes'
bookkeeping, its PostgreSQL backends, the outcome writer), to see how much of the
ledger's gap on a small machine is just that CPU sharing the cores with Celery's
main process.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

#: Seconds of each busy slice.
SLICE = 0.001


def burn(fraction: float) -> None:
    """Keep ``fraction`` of one core busy, forever: busy ``SLICE``, then sleep the rest."""
    if not 0 < fraction < 1:
        raise ValueError(f"a side load is a fraction of one core in (0, 1), not {fraction}")
    rest = SLICE * (1 - fraction) / fraction
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < SLICE:
            pass
        time.sleep(rest)


@contextlib.contextmanager
def side_load(fraction: float) -> Iterator[subprocess.Popen[bytes]]:
    """A process burning ``fraction`` of one core while the block runs."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks._side_load", str(fraction)])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    burn(float(sys.argv[1]))
