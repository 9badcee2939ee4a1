"""Beat reading the ledger, with real ``celery -A app beat`` processes: two beats against
one ledger make exactly one job per firing, the standby takes over within the lease
bound when the active one is SIGKILLed (or at once when it stops cleanly), an edit or a
disable takes effect without a restart, and one beat works on an SQLite ledger.

The beats run with a short lease (``JOBLEDGER_BEAT_LEASE_SECONDS``) and tick, so the
takeover bound is seconds; no worker is needed: a firing is the job's ledger row.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app import db
from app.config import settings
from app.ledger import definitions
from app.ledger.runtime.beat import LEASE_NAME, Lease
from app.migrate import upgrade
from tests.support.processes import ROOT

LEASE = 4.0
TICK = 0.5
#: Longest a standby needs to notice a dead beat's lease expired and fire.
TAKEOVER_BOUND = LEASE + 2 * TICK


class Beat:
    """One ``celery -A app beat`` process and its log."""

    def __init__(self, folder: Path, name: str, env: dict[str, str]) -> None:
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "app",
                    "beat",
                    "--loglevel=INFO",
                    "-s",
                    str(folder / f"{name}-schedule"),
                    "--pidfile",
                    str(folder / f"{name}.pid"),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> None:
        assert self.process.poll() is None, self.log()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def beats(tmp_path: Path) -> Iterator[list[Beat]]:
    started: list[Beat] = []
    yield started
    for beat in started:
        beat.stop()


def beat_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "JOBLEDGER_BEAT_LEASE_SECONDS": str(LEASE),
        "JOBLEDGER_BEAT_TICK_SECONDS": str(TICK),
        **extra,
    }


def fired(name: str) -> list[dict[str, Any]]:
    """The jobs of definition ``name`` (tenant default), by scheduled time."""
    with db.engine().connect() as connection:
        rows = connection.execute(
            text(
                "SELECT j.id, j.scheduled_for, j.created_at, j.payload, j.trigger, j.created_by,"
                " j.definition_version FROM jobs j JOIN job_definitions d"
                " ON d.id = j.definition_id WHERE d.name = :name ORDER BY j.scheduled_for"
            ),
            {"name": name},
        ).mappings()
        return [{**row, "scheduled_for": _aware(row["scheduled_for"])} for row in rows]


def _aware(moment: Any) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def wait_for(check: Any, timeout: float, *watched: Beat) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for beat in watched:
            beat.alive()
        found = check()
        if found:
            return found
        time.sleep(0.1)  # polling interval of the check, not a stand-in for work
    logs = "\n".join(beat.log()[-3000:] for beat in watched)
    raise AssertionError(f"not within {timeout}s\n{logs}")


def holder_pid() -> int:
    state = Lease(LEASE_NAME, "reader", LEASE).state()
    assert state is not None
    return int(state.holder.split(":")[1])


def every(name: str, seconds: int, value: int = 1, catch_up: str = "skip") -> None:
    definitions.create(
        tenant="default",
        name=name,
        type="example.echo",
        payload={"value": value},
        schedule={"every": seconds},
        catch_up=catch_up,
        actor="cli",
        changed_by="test",
    )


def test_two_beats_make_one_job_per_firing_and_the_standby_takes_over_a_killed_one(
    beats: list[Beat], tmp_path: Path
) -> None:
    every("two-beats", 2)
    beats += [Beat(tmp_path, "beat-a", beat_env()), Beat(tmp_path, "beat-b", beat_env())]
    wait_for(lambda: len(fired("two-beats")) >= 8, 40, *beats)  # ~16 s of firings
    active = next(b for b in beats if b.process.pid == holder_pid())
    standby = next(b for b in beats if b is not active)
    assert " -> job " in active.log()
    # the standby tried no firing while standing by (the lease; the unique index would
    # refuse it a second job anyway, logged as "no job")
    assert " -> job " not in standby.log()
    assert ": no job (" not in standby.log()

    active.process.send_signal(signal.SIGKILL)
    active.process.wait(5)
    killed_at = datetime.now(UTC)
    before = len(fired("two-beats"))
    wait_for(lambda: len(fired("two-beats")) >= before + 1, TAKEOVER_BOUND + 5, standby)
    taken_over = datetime.now(UTC)
    wait_for(lambda: len(fired("two-beats")) >= before + 6, 30, standby)  # ~12 s more

    runs = fired("two-beats")
    moments = [run["scheduled_for"] for run in runs]
    assert len(set(moments)) == len(moments)  # one job per firing
    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert all(gap >= timedelta(seconds=2) for gap in gaps)  # every-2-s firings, none doubled
    # one gap of at most the takeover bound (firings missed meanwhile are skipped), the
    # rest exactly one period
    long_gaps = [gap for gap in gaps if gap > timedelta(seconds=2)]
    assert len(long_gaps) <= 1, gaps
    assert all(gap <= timedelta(seconds=TAKEOVER_BOUND + 2) for gap in long_gaps), gaps
    assert {(run["trigger"], run["created_by"]) for run in runs} == {("beat", "beat")}
    state = Lease(LEASE_NAME, "reader", LEASE).state()
    assert state is not None
    assert int(state.holder.split(":")[1]) == standby.process.pid
    assert state.acquired_at is not None
    took = (state.acquired_at - killed_at).total_seconds()  # same host: one clock
    first_run = (taken_over - killed_at).total_seconds()
    print(
        f"takeover after SIGKILL: lease taken {took:.1f} s later, first new run seen"
        f" {first_run:.1f} s later (bound {TAKEOVER_BOUND} s)"
    )
    assert took <= TAKEOVER_BOUND
    assert "holds the lease: active" in standby.log()


def test_a_beat_stopped_cleanly_hands_the_lease_over_at_once(
    beats: list[Beat], tmp_path: Path
) -> None:
    every("handover", 1)
    beats += [Beat(tmp_path, "beat-a", beat_env()), Beat(tmp_path, "beat-b", beat_env())]
    wait_for(lambda: len(fired("handover")) >= 3, 40, *beats)
    active = next(b for b in beats if b.process.pid == holder_pid())
    standby = next(b for b in beats if b is not active)

    started = time.monotonic()
    active.stop()
    assert "released the lease" in active.log()
    wait_for(lambda: holder_pid() == standby.process.pid, LEASE, standby)
    handed_over = time.monotonic() - started
    before = len(fired("handover"))
    wait_for(lambda: len(fired("handover")) >= before + 2, 10, standby)

    moments = [run["scheduled_for"] for run in fired("handover")]
    assert len(set(moments)) == len(moments)
    assert handed_over < LEASE  # not waiting for the lease to expire


def test_an_edit_reaches_the_next_run_and_a_disable_stops_the_runs_without_a_restart(
    beats: list[Beat], tmp_path: Path
) -> None:
    every("edited", 1, value=1)
    beats.append(Beat(tmp_path, "beat", beat_env()))
    wait_for(lambda: fired("edited"), 40, *beats)

    definitions.update(
        "default", "edited", {"payload": {"value": 2}}, actor="cli", changed_by="test"
    )
    edited = wait_for(lambda: [r for r in fired("edited") if r["payload"]["value"] == 2], 5, *beats)
    assert edited[0]["definition_version"] == 2
    assert all(r["payload"]["value"] == 1 for r in fired("edited") if r["definition_version"] == 1)

    definitions.update("default", "edited", {"enabled": False}, actor="cli", changed_by="test")
    settled = time.monotonic() + 2 * TICK  # a tick already under way may still fire
    while time.monotonic() < settled:
        time.sleep(0.1)  # polling interval, not a stand-in for work
    count = len(fired("edited"))
    quiet_until = time.monotonic() + 4  # four periods of the definition
    while time.monotonic() < quiet_until:
        beats[0].alive()
        time.sleep(0.2)  # the time under test: runs would appear every second
    assert len(fired("edited")) == count


def test_one_beat_runs_definitions_on_an_sqlite_ledger(
    beats: list[Beat], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    upgrade(database_url=url)
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", url)
    settings.cache_clear()
    db.reset()
    try:
        every("embedded", 1)
        beats.append(Beat(tmp_path, "beat", beat_env(JOBLEDGER_DATABASE_URL=url)))
        runs = wait_for(lambda: len(fired("embedded")) >= 3 and fired("embedded"), 40, *beats)
        moments = [run["scheduled_for"] for run in runs]
        assert len(set(moments)) == len(moments)
        names = {d.name for d in definitions.list_("default")}
        assert {
            "lifeline",
            "purge",
            "settle_counts",
            "embedded",
        } <= names  # built-ins made at beat start
    finally:
        beats[0].stop() if beats else None
        db.reset()
        monkeypatch.undo()
        settings.cache_clear()
