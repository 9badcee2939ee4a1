"""Who moves a job, and what made it: each stated once here.

The ``Literal`` types are the statement; the tuples (the schema's CHECK constraints in
:mod:`models.ledger`) are derived from them, so a new actor is one word added here (and
a migration of the constraint).
"""

from __future__ import annotations

from typing import Literal, get_args

#: Who records a transition (``job_events.actor``).
Actor = Literal["producer", "worker", "beat", "api", "cli", "lifeline", "purge"]
#: What made a job (``jobs.trigger``); ``manual`` is a definition run by hand;
#: ``schedule`` a schedule firing of a type that is itself the scheduled form of another
#: (``scheduled_sync_and_suggest``, the budget app's name for it; every other type's
#: firings are ``beat``).
Trigger = Literal["producer", "beat", "api", "retry", "manual", "schedule"]

ACTORS: tuple[str, ...] = get_args(Actor)
TRIGGERS: tuple[str, ...] = get_args(Trigger)


def actor_for(trigger: str) -> Actor:
    """Who records the creation of a job made by ``trigger``: beat (its firings, ``beat``
    or ``schedule``) and the API are their own actors, anything else (a producer, a
    manual retry's republish) a producer."""
    if trigger in ("beat", "schedule"):
        return "beat"
    return "api" if trigger == "api" else "producer"
