"""The lazy start's timer (app.ledger.runtime.lazy_start): one thread per process that
writes each pending start when it is due, in the order they are due, and skips those
written (or finished) meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

from app.ledger.runtime import lazy_start


class Due:
    """What the timer needs of a pending start: when it is due, whether it still is
    pending, and its write."""

    def __init__(self, name: str, due: float, written: list[str], done: threading.Event) -> None:
        self.name, self.due, self.written, self.done = name, due, written, done
        self.pending = True
        self.target: Any = None

    def write(self) -> None:
        self.written.append(self.name)
        self.pending = False
        self.done.set()


def test_one_timer_thread_per_process() -> None:
    first, second = lazy_start._timer(), lazy_start._timer()

    assert first is second
    named = [t for t in threading.enumerate() if t.name == "jobledger-lazy-start"]
    assert len(named) == 1
    assert named[0].daemon


def test_pending_starts_are_written_when_due_in_due_order_and_skipped_once_written() -> None:
    timer = lazy_start._timer()
    written: list[str] = []
    last = threading.Event()
    now = time.monotonic()
    late = Due("late", now + 0.3, written, last)
    early = Due("early", now + 0.1, written, threading.Event())
    finished = Due("finished", now + 0.2, written, threading.Event())
    finished.pending = False  # its finish wrote start and outcome: nothing to do

    for pending in (late, finished, early):
        timer.add(pending)  # type: ignore[arg-type]

    assert last.wait(10)
    assert written == ["early", "late"]
    assert time.monotonic() >= late.due
