"""A producer on a worker host whose link the test takes down (tests/faults/test_db_partition.py).

Usage::

    ip netns exec NS python -m tests.support.cut_producer QUEUE

It records and publishes one ``example.echo`` job on ``QUEUE`` (its connections to the
ledger and the broker are open and pooled from then on) and prints ``ready <job id>``;
then, at a line on its standard input (sent once the link is down), calls ``delay()``
once more and prints what happened as one JSON line: ``{"error": <type>, "message": …,
"seconds": …}`` or ``{"published": <job id>, "seconds": …}``.
"""

from __future__ import annotations

import json
import sys
import time

from tests.support.jobs import echo


def main(queue: str) -> None:
    first = echo.apply_async(kwargs={"value": 1}, queue=queue)
    print(f"ready {first.id}", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    try:
        job = echo.apply_async(kwargs={"value": 2}, queue=queue)
    except Exception as error:
        outcome = {"error": type(error).__name__, "message": str(error)}
    else:
        outcome = {"published": job.id}
    outcome["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
