"""How big the retention purge's next batch is, and how long it pauses after one.

Usage::

    pacing = PurgePacing(largest=200, target_seconds=0.25, pause_factor=3.0)
    size = pacing.size                       # jobs in the next batch
    pause = pacing.after(jobs, seconds)      # record a committed batch; seconds to pause

Two rules, each with its setting (both measured with ``benchmarks/purge.py``):

- **A batch is sized to a target duration** (``JOBLEDGER_PURGE_BATCH_SECONDS``): a
  purge batch is one transaction, and a count of jobs does not bound its length (a job
  may carry a hundred thousand log lines; a loaded machine slows every batch). A batch
  that took longer than the target makes the next one smaller in proportion; a quicker
  one lets it grow back, at most doubling, up to ``JOBLEDGER_PURGE_BATCH_SIZE``.
  ``0`` keeps every batch at that size.
- **The purge yields between batches** (``JOBLEDGER_PURGE_PAUSE_FACTOR``): it pauses
  for that many times the duration of the batch it just committed, as pt-archiver's
  ``--sleep-coef`` does, so the ledger's inserts keep most of the machine while a
  day's worth of old jobs is deleted: ``3`` purges at most a quarter of the time, ``0``
  never pauses; no pause is longer than 30 s. The default is 3 (inserts beside the purge
  keep most of their rate with it, fewer with 1: benchmarks/RESULTS.md, "Pause factor"):
  a daily job has hours, ingest has none to spare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The longest pause, whatever the batch took: a batch of 100 s (a job with a hundred
#: thousand log lines) must not idle the purge job for 300 s — the lifeline's timeout.
LONGEST_PAUSE_SECONDS = 30.0


@dataclass
class PurgePacing:
    """The pacing of one purge run (one instance per run: it learns as batches commit)."""

    #: Most jobs in one batch.
    largest: int
    #: Wanted duration of one batch's transaction, in seconds (0: batches stay ``largest``).
    target_seconds: float
    #: Pause after a batch, as a multiple of that batch's duration (0: no pause).
    pause_factor: float
    #: Jobs in the next batch.
    size: int = field(init=False)

    def __post_init__(self) -> None:
        if self.largest < 1:
            raise ValueError(f"largest must be >= 1, got {self.largest}")
        if self.target_seconds < 0 or self.pause_factor < 0:
            raise ValueError("target_seconds and pause_factor must be >= 0")
        self.size = self.largest

    def after(self, jobs: int, seconds: float) -> float:
        """Record a committed batch of ``jobs`` that took ``seconds``; the pause before
        the next batch, in seconds."""
        if self.target_seconds and jobs and seconds > 0:
            fitting = int(jobs * self.target_seconds / seconds)
            self.size = max(1, min(fitting, 2 * self.size, self.largest))
        return min(max(seconds, 0.0) * self.pause_factor, LONGEST_PAUSE_SECONDS)
