"""The beat scheduler that reads the ledger: ``celery -A app beat`` runs
:class:`LedgerScheduler` (``app.conf.beat_scheduler``).

Each tick (every ``JOBLEDGER_BEAT_TICK_SECONDS``, 1 s by default):

1. **The lease.** The beat claims or renews the row ``beat`` of ``beat_leases`` for
   ``JOBLEDGER_BEAT_LEASE_SECONDS`` (30) on the database clock
   (:mod:`app.ledger.engines.lease_queries`). One statement decides: it succeeds when
   the row is missing, this beat's own, or expired. A beat that does not hold the lease
   publishes nothing and tries again next tick, so any number of beats may run: one is
   active, the others stand by. When the active one dies without a word (SIGKILL, a
   lost machine) its lease expires and a standby takes over at its next tick: within
   ``lease + tick`` seconds. A beat that stops cleanly hands the lease back, and a
   standby takes over at its next tick.
2. **The definitions.** The active beat asks :func:`app.ledger.definitions.due` for the
   enabled, scheduled definitions whose ``next_run_at`` has come (read afresh every tick,
   so an edit, a new definition, a disable takes effect within one tick, without a
   restart), makes each firing with :func:`~app.ledger.definitions.run` (trigger
   ``beat``) and then moves the definition on with
   :func:`~app.ledger.definitions.advance`.
3. **The entries an application adds** to ``app.conf.beat_schedule`` (none are built
   in; :mod:`app.schedule`) are sent by Celery's own heap, by the active beat only.

Never twice: the lease makes one beat active, but it is not what guarantees it. A firing
is the pair ``(definition, scheduled_for)`` and the database refuses a second job for it
(a unique index), so a beat that lost its lease mid-tick (paused past its expiry) or died
between ``run`` and ``advance`` makes no second job: the next active beat's ``run`` of
the same firing finds it made and only advances the definition. ``advance`` is guarded on
the last firing, so two beats never move a definition twice.

Built-in definitions (purge, lifeline, scheduled syncs) are created, if missing, when the
scheduler starts (:func:`app.ledger.operations.builtin_definitions.ensure_builtin_definitions`).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.beat import Scheduler
from pydantic import Field

from app import db
from app.config import JobledgerSettings, settings
from app.exceptions import DefinitionArchived, InvalidPayload
from app.ledger import engines
from app.ledger.engines import lease_queries

logger = logging.getLogger(__name__)

#: The name of the lease every beat of a ledger competes for.
LEASE_NAME = "beat"
#: Ticks back an active beat counts as watching: the firings of a tick that came late
#: (by less than this) are all made, not left to the catch-up rule.
WATCH_TICKS = 5


class BeatSettings(JobledgerSettings):
    """How the beat holds its lease and how often it looks at the definitions."""

    #: Seconds a lease lasts unless renewed; a dead beat's successor waits at most this
    #: long plus one tick.
    beat_lease_seconds: float = Field(default=30, gt=0)
    #: Seconds between two ticks (lease renewal, due definitions); below the lease.
    beat_tick_seconds: float = Field(default=1, gt=0)


@dataclass(frozen=True)
class LeaseState:
    """Who holds a lease, until when (database clock), since when."""

    holder: str
    expires_at: datetime
    acquired_at: datetime | None


class Lease:
    """The row ``name`` of ``beat_leases``, held for ``seconds`` at a time by ``holder``."""

    def __init__(self, name: str, holder: str, seconds: float) -> None:
        self.name = name
        self.holder = holder
        self.seconds = seconds

    def hold(self) -> bool:
        """Claim or renew the lease; True when this holder holds it now (until
        ``seconds`` from now on the database clock)."""
        engine = engines.current()

        def claim(connection: Any) -> bool:
            now = engine.database_now(connection)
            until = now + timedelta(seconds=self.seconds)
            statement = lease_queries.claim(engine, self.name, self.holder, now, until)
            return connection.execute(statement).first() is not None

        return db.in_transaction(claim, "claim the beat lease")

    def release(self) -> None:
        """Hand the lease back now (if this holder holds it): the next claim succeeds."""
        engine = engines.current()

        def release(connection: Any) -> None:
            now = engine.database_now(connection)
            connection.execute(lease_queries.release(self.name, self.holder, now))

        db.in_transaction(release, "release the beat lease")

    def state(self) -> LeaseState | None:
        """The lease row as it stands (None when nobody ever held it)."""
        with db.engine().connect() as connection:
            row = connection.execute(lease_queries.read(self.name)).first()
        if row is None:
            return None
        return LeaseState(row.holder, _aware(row.expires_at), _aware(row.acquired_at))


def holder_name() -> str:
    """This process's name in the lease: host, pid and a random part (a pid reused after
    a restart is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LedgerScheduler(Scheduler):  # type: ignore[misc]
    """Celery beat scheduler over the ledger's definitions (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        config = settings.of(BeatSettings)
        self.tick_seconds = config.beat_tick_seconds
        self.lease = Lease(LEASE_NAME, holder_name(), config.beat_lease_seconds)
        self.active: bool | None = None  # not known before the first tick
        #: When this beat, active, last looked at the due definitions (None: not active,
        #: or not looked yet): the firings after it fell due while a beat ran.
        self.last_look: datetime | None = None
        kwargs["max_interval"] = self.tick_seconds
        super().__init__(*args, **kwargs)
        self.max_interval: float = min(float(self.max_interval), self.tick_seconds)

    def setup_schedule(self) -> None:
        """The plain-task entries of ``beat_schedule``, and the built-in definitions
        created if missing (an operator's edit of one is kept)."""
        super().setup_schedule()
        from app.ledger.operations.builtin_definitions import ensure_builtin_definitions

        created = ensure_builtin_definitions()
        if created:
            logger.info("beat: created the built-in definitions %s", [d.name for d in created])
        logger.info(
            "beat: %s reads the ledger's definitions (lease %s s, tick %s s)",
            self.lease.holder,
            self.lease.seconds,
            self.tick_seconds,
        )

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew (or claim) the lease; when held, fire the due definitions and the due
        plain tasks. Seconds until the next tick."""
        try:
            holding = self.lease.hold()
        except Exception:
            logger.exception("beat: could not reach the ledger to renew the lease")
            holding = False
        if holding != self.active:
            self.active = holding
            if holding:
                logger.info("beat: %s holds the lease: active", self.lease.holder)
            else:
                logger.warning("beat: %s does not hold the lease: standing by", self.lease.holder)
        if not holding:
            self.last_look = None
            return self.tick_seconds
        try:
            self.fire_due()
        except Exception:
            logger.exception("beat: firing the due definitions failed; trying again next tick")
        delay = super().tick(*args, **kwargs)
        return min(delay, self.tick_seconds) if delay is not None else self.tick_seconds

    def fire_due(self) -> int:
        """Make every due firing of every due definition; how many jobs were made."""
        from app.ledger import definitions

        made = 0
        now = _database_now()
        watched_since = None
        if self.last_look is not None:
            # a late tick makes every firing since the last look; a beat stalled for
            # longer than WATCH_TICKS ticks follows the catch-up rule for the older ones
            window = timedelta(seconds=WATCH_TICKS * self.tick_seconds)
            watched_since = max(self.last_look, now - window)
        for definition, firings in definitions.due(now, watched_since=watched_since):
            for scheduled_for in firings:
                try:
                    job_id = definitions.run(
                        definition.tenant,
                        definition.name,
                        scheduled_for=scheduled_for,
                        trigger="beat",
                        created_by="beat",
                    )
                except (InvalidPayload, LookupError, DefinitionArchived):
                    # a definition that cannot run (its payload no longer valid, its type
                    # gone, archived meanwhile): this firing is dropped, not retried every
                    # tick. Anything else (the ledger or the broker unreachable) leaves the
                    # definition where it is: the next tick makes the same firing again,
                    # and the database refuses it a second job.
                    logger.exception(
                        "beat: definition %s/%s could not run for %s",
                        definition.tenant,
                        definition.name,
                        scheduled_for.isoformat(),
                    )
                    continue
                if job_id is None:
                    logger.info(
                        "beat: %s/%s for %s: no job (made already, or disabled meanwhile)",
                        definition.tenant,
                        definition.name,
                        scheduled_for.isoformat(),
                    )
                else:
                    made += 1
                    logger.info(
                        "beat: %s/%s for %s -> job %s",
                        definition.tenant,
                        definition.name,
                        scheduled_for.isoformat(),
                        job_id,
                    )
            if firings:
                definitions.advance(
                    definition.id, firings[-1], _next_run(definition, firings[-1], now)
                )
            else:  # catch-up skip: what fell due while no beat was active is not made
                definitions.pass_over(definition, now)
        self.last_look = now
        return made

    def close(self) -> None:
        """Hand the lease back on a clean stop, so a standby takes over at its next tick."""
        try:
            if self.active:
                self.lease.release()
                logger.info("beat: %s released the lease", self.lease.holder)
        except Exception:
            logger.exception("beat: could not release the lease (it expires on its own)")
        finally:
            self.active = None
            super().close()

    @property
    def info(self) -> str:
        return (
            f"    . ledger definitions, lease {self.lease.seconds:g} s "
            f"({self.lease.holder}), tick {self.tick_seconds:g} s"
        )


def _next_run(definition: Any, fired_for: datetime, now: datetime) -> datetime | None:
    """The firing after ``fired_for`` that is still to come (missed ones are the catch-up
    rule's, already applied by ``due``)."""
    from app.ledger.rules.schedules import next_after

    if definition.schedule is None:
        return None
    following: datetime = next_after(definition.schedule, fired_for)
    if following <= now:
        following = next_after(definition.schedule, now)
    return following


def _database_now() -> datetime:
    engine = engines.current()
    with db.engine().connect() as connection:
        return engine.database_now(connection)


def _aware(moment: Any) -> Any:
    from app.ledger.engines.base import aware

    return None if moment is None else aware(moment)
