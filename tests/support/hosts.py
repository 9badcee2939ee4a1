"""The multi-host test's and benchmark's moving parts besides the namespaces
(:mod:`tests.support.netns`): the job type the hosts run, and the two processes that
stand on the machine itself, a producer and the lifeline's beat, each started with the
broker under test in its environment (this process keeps the session's broker).

The two processes are started as ``python -m tests.support.hosts_roles publish|lifeline``
(a module of its own, so that ``hosts.work`` is defined once in them).

``hosts.work`` records where each execution's body ran to its end in a file shared by
every host (namespaces share the file system, not the network): the test tells a body
that finished on a cut-off host from the ledger's single outcome.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from app.ledger.runtime.context import JobContext
from app.ledger.runtime.task import JobPayload, job_task

#: The file each finished body appends ``<job id> <host> <pid>`` to (set by the test).
DONE_FILE = "JOBLEDGER_TEST_HOSTS_DONE"
#: The host label of a worker's environment (``host0``, ``host1``…).
HOST_LABEL = "JOBLEDGER_TEST_HOST"


class WorkPayload(JobPayload):
    #: Wall time the body takes (0: a no-op).
    seconds: float = 0
    #: Heartbeat while working (``job.tick()``); a silent body reports nothing until its end.
    heartbeat: bool = True


@job_task("hosts.work", WorkPayload, retry_when_orphaned=True)
def work(job: JobContext, payload: WorkPayload) -> dict[str, Any]:
    """Stand-in for a job of ``seconds`` (I/O bound: it waits, so that three hosts fit on two
    cores), safe to run again: it writes nothing but the line saying its body ended."""
    ends = time.monotonic() + payload.seconds
    while (left := ends - time.monotonic()) > 0:
        time.sleep(min(left, 0.2))  # the job's own work, not a test waiting
        if payload.heartbeat:
            job.tick()
    host = os.environ.get(HOST_LABEL, "")
    done = os.environ.get(DONE_FILE)
    if done:
        with open(done, "a") as handle:  # one short O_APPEND write: lines never interleave
            handle.write(f"{job.job_id} {host} {os.getpid()}\n")
    return {"host": host}


def finished_bodies(path: Path) -> list[tuple[str, str]]:
    """``(job id, host)`` of every execution whose body ran to its end."""
    if not path.exists():
        return []
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def publish(
    queue: str, short: int, long: int, seconds: tuple[float, float], seed: int
) -> list[str]:
    """``long`` jobs (alternately heartbeating and silent) first, so that every host holds
    some of them when the faults come, then ``short`` no-op ones; in batches over one
    producer (the bulk enqueue path)."""
    rng = random.Random(seed)
    payloads: list[dict[str, Any]] = [
        {"seconds": round(rng.uniform(*seconds), 2), "heartbeat": n % 2 == 0} for n in range(long)
    ]
    payloads += [{} for _ in range(short)]
    ids: list[str] = []
    for start in range(0, len(payloads), 100):
        results = work.apply_many(payloads[start : start + 100], queue=queue)
        ids += [str(result.id) for result in results]
    return ids


def lifeline_loop(interval: float) -> None:
    """What beat does with the built-in lifeline definition, without the job around it: one
    pass every ``interval`` seconds; each pass's result as a JSON line on stdout."""
    from app.ledger.operations import lifeline

    while True:
        started = time.monotonic()
        result = lifeline.run_once()
        if result.failed or result.requeued or result.queued_failed or result.restored:
            print(json.dumps({"at": time.time(), **result.as_dict()}), flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))  # beat's period
