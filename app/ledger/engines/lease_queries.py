"""The statements of the beat lease (:mod:`app.ledger.runtime.beat` says how it works):
one row per lease name in ``beat_leases``; a holder claims it when it is free, its own or
expired, renews it by claiming it again, and hands it back on a clean stop.

Every time is the database clock (read by the caller in the same transaction and bound),
so beats on machines whose clocks disagree still agree on who holds the lease.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, Update, case, or_, select, update

from app.ledger.engines.base import Engine
from models.tables import beat_leases

__all__ = ["beat_leases", "claim", "read", "release"]


def claim(engine: Engine, name: str, holder: str, now: datetime, until: datetime) -> Any:
    # Take or renew the lease: inserted when there is no row; updated only when its
    # holder is this one (a renewal keeps acquired_at) or it has expired (a takeover).
    # RETURNING gives a row exactly when this holder holds the lease afterwards.
    insert = engine.insert(beat_leases).values(
        name=name, holder=holder, expires_at=until, acquired_at=now
    )
    current = beat_leases.c
    return insert.on_conflict_do_update(
        index_elements=["name"],
        set_={
            "holder": insert.excluded.holder,
            "expires_at": insert.excluded.expires_at,
            "acquired_at": case(
                (current.holder == insert.excluded.holder, current.acquired_at),
                else_=insert.excluded.acquired_at,
            ),
        },
        where=or_(current.holder == holder, current.expires_at <= now),
    ).returning(current.acquired_at)


def release(name: str, holder: str, now: datetime) -> Update:
    # Hand the lease back (expired now) if this holder still holds it.
    return (
        update(beat_leases)
        .where(beat_leases.c.name == name, beat_leases.c.holder == holder)
        .values(expires_at=now)
    )


def read(name: str) -> Select[Any]:
    # Who holds the lease and until when (the row, or none).
    return select(beat_leases.c.holder, beat_leases.c.expires_at, beat_leases.c.acquired_at).where(
        beat_leases.c.name == name
    )
