"""The worker's ledger calls per job, without Celery: the eager start against the lazy one.

Usage::

    .venv/bin/python -m benchmarks.start_paths               # 1,500 jobs per measurement, 3 rounds
    .venv/bin/python -m benchmarks.start_paths --n 5000 --rounds 5

What a pool process calls for one quick job, in one process, against the benchmark's
database (no broker, no worker: the noise of Celery and of the pool on a shared machine
is left out):

- **eager** (``JOBLEDGER_LAZY_START_SECONDS=0``): ``record_started`` (RECORD_STARTED),
  then ``record_finished`` (RECORD_FINISHED): two writes;
- **lazy** (the default): ``may_start`` (MAY_START, a read), then
  ``record_started_finished`` (RECORD_STARTED_FINISHED): one read, one write.

Each measurement records fresh ``queued`` jobs (untimed), then times the calls for all
of them: wall and this process's CPU in microseconds per job, the variants alternated
(eager lazy, then lazy eager), medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from app.ledger import transitions as ledger
from benchmarks import _harness as h  # before the app reads its settings


def queued(count: int) -> list[uuid.UUID]:
    jobs = [ledger.NewJob(id=uuid.uuid4(), type="bench.noop", payload={}) for _ in range(count)]
    ledger.record_queued_many(jobs)
    return [job.id for job in jobs]


def execution(job_id: uuid.UUID, started_at: object = None) -> ledger.Execution:
    return ledger.Execution(
        celery_task_id=str(job_id),
        execution_id=str(uuid.uuid4()),
        worker="bench@host",
        worker_pid=1,
        started_at=started_at,  # type: ignore[arg-type]
    )


def eager(job_id: uuid.UUID) -> None:
    run = execution(job_id)
    ledger.record_started(
        job_id,
        celery_task_id=run.celery_task_id,
        execution_id=run.execution_id,
        worker=run.worker,
        worker_pid=run.worker_pid,
    )
    if ledger.record_finished(job_id, execution_id=run.execution_id, result=None) is None:
        raise AssertionError(f"job {job_id} not finished")


def lazy(job_id: uuid.UUID) -> None:
    run = execution(job_id)
    allowed = ledger.may_start(job_id, run)
    if allowed is None:
        raise AssertionError(f"job {job_id} may not start")
    run = execution(job_id, allowed.started_at)
    if ledger.record_started_finished(job_id, run, source=allowed.status, result=None) is None:
        raise AssertionError(f"job {job_id} not finished")


VARIANTS: dict[str, Callable[[uuid.UUID], None]] = {"eager": eager, "lazy": lazy}


def measure(variant: str, count: int) -> dict[str, float]:
    ids = queued(count)
    wall, cpu = time.perf_counter(), time.process_time()
    for job_id in ids:
        VARIANTS[variant](job_id)
    return {
        "wall_us_per_job": (time.perf_counter() - wall) / count * 1e6,
        "cpu_us_per_job": (time.process_time() - cpu) / count * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1500, help="jobs per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    h.recreate_database()
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for number in range(1, args.rounds + 1):
            order = list(VARIANTS) if number % 2 else list(reversed(VARIANTS))  # no drift
            figures = {variant: measure(variant, args.n) for variant in order}
            rounds.append(figures)
            for variant, values in figures.items():
                print(
                    f"round {number} {variant:5}: {values['wall_us_per_job']:6.0f} us/job wall, "
                    f"{values['cpu_us_per_job']:5.0f} us/job CPU here",
                    flush=True,
                )
    finally:
        h.drop_database()
    medians = {
        variant: {
            key: statistics.median(r[variant][key] for r in rounds) for key in rounds[0][variant]
        }
        for variant in VARIANTS
    }
    ratio = medians["lazy"]["wall_us_per_job"] / medians["eager"]["wall_us_per_job"]
    print(f"medians: {medians}\nlazy / eager wall: {ratio:.2f}")
    h.Record(
        "start_paths",
        {"n": args.n, "rounds": args.rounds, "note": args.note},
        {"medians": medians, "rounds": rounds, "lazy_over_eager_wall": ratio},
    ).write()


if __name__ == "__main__":
    main()
