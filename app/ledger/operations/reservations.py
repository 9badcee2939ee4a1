"""Messages reserved by workers on a Redis broker, and giving them back to their queue.

kombu's Redis transport emulates acknowledgements: a message a worker takes (to run now,
or prefetched) is moved into the ``unacked`` hash (delivery tag -> ``[message, exchange,
routing key]``) and its delivery time into the ``unacked_index`` sorted set, until the
worker acknowledges it. Only after ``visibility_timeout`` (1 h by default) does kombu put
such a message back on its own, whoever holds it. The lifeline uses this module to give
back sooner the reservations that no live worker holds (see :mod:`app.ledger.operations.lifeline`).

Giving back reuses kombu's own ``QoS.restore_by_tag``: one Redis transaction that
watches the ``unacked`` hash, removes the entry and pushes the message to its queue
(marked ``redelivered``). An acknowledgement or another restore of the same tag racing
it makes the transaction start again and find the entry gone, so a message is never
pushed twice nor pushed after its ack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kombu.transport.redis import Channel


@dataclass(frozen=True)
class Reservation:
    """One unacknowledged message."""

    tag: str
    task_id: str
    #: The message's headers (the ledger's ``jobledger`` header among them).
    headers: dict[str, Any]


def reserved_before(channel: Channel, moment: float) -> list[Reservation]:
    """The messages taken by a worker before ``moment`` and not acknowledged since."""
    client = channel.client
    found = client.zrange(channel.unacked_index_key, "-inf", moment, byscore=True, withscores=True)
    if not found:
        return []
    tags = [tag for tag, _ in found]
    payloads = client.hmget(channel.unacked_key, tags)
    reservations = []
    for (tag, _), raw in zip(found, payloads, strict=True):
        if raw is None:
            continue  # acknowledged meanwhile
        headers = _headers(raw)
        if headers.get("id"):
            reservations.append(Reservation(_text(tag), str(headers["id"]), headers))
    return reservations


def held_task_ids(channel: Channel, chunk: int = 1000) -> set[str]:
    """The task id of every message a worker holds now (the hash read ``chunk`` entries
    per round trip)."""
    held = (
        _headers(raw).get("id")
        for _, raw in channel.client.hscan_iter(channel.unacked_key, count=chunk)
    )
    return {str(task_id) for task_id in held if task_id}


def give_back(channel: Channel, tag: str) -> None:
    """Put a reserved message back at the end of its queue (kombu's own restore)."""
    channel.qos.restore_by_tag(tag, client=channel.client)


def _headers(raw: bytes | str) -> dict[str, Any]:
    try:
        message = json.loads(raw)[0]
        headers = message.get("headers") or {}
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return {}
    return headers if isinstance(headers, dict) else {}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
