"""The bulk path's messages are the ones ``Task.apply_async`` makes, byte for byte.

:class:`~app.ledger.runtime.publishing.Sender` calls Celery's message maker and sender
directly with what is the same for every message found once; a worker must not be able
to tell its messages from ``apply_async``'s. Both are gathered over the real broker's
channel (nothing is sent) and compared as kombu prepared them, with the publish signals.
The ``task-sent`` events are Celery's too, each one; the bulk path sends a chunk's
together in one ``task.multi`` message (the form of a worker's buffered task events).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from celery.signals import after_task_publish, before_task_publish
from kombu.messaging import Producer

from app.ledger.runtime import publishing
from app.ledger.runtime.celery_redaction import payload_reprs
from app.ledger.runtime.target import JobTarget
from tests.support.jobs import echo


class _Captured(publishing._Batch):
    def __init__(self, connected: Producer) -> None:
        super().__init__(connected)
        self.messages: list[tuple[str, str, str]] = []

    def gather(
        self, message: Any, exchange: str, key: str, mandatory: bool, immediate: bool
    ) -> None:
        if not isinstance(message, dict):  # RabbitMQ: py-amqp's Message
            body = message.body.decode() if isinstance(message.body, bytes) else message.body
            message = {"body": body, **message.properties}
        self.messages.append((json.dumps(message), exchange, key))


def _gathered(
    send: Callable[[publishing.Outgoing, Producer], Any], outgoing: list[publishing.Outgoing]
) -> tuple[list[tuple[str, str, str]], list[str]]:
    signals: list[str] = []

    def before(sender: str, headers: dict[str, Any], **_: Any) -> None:
        signals.append(f"before {sender} {headers['id']}")

    def after(sender: str, headers: dict[str, Any], **_: Any) -> None:
        signals.append(f"after {sender} {headers['id']}")

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        with echo.app.producer_or_acquire() as connected:
            batch = _Captured(connected)
            for message in outgoing:
                send(message, batch.producer)
            if isinstance(send, publishing.Sender):
                send.events.flush(batch.producer)  # the chunk's events, after its messages
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)
    return batch.messages, signals


def _events(gathered: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
    """Every ``task-sent`` event gathered (alone in its message, or in a list of them),
    but for its Lamport clock and timestamp (they differ per event), with its message's
    envelope and exchange, in the order of the events' task ids."""
    found = []
    for raw, exchange, _key in gathered:
        if '"task-sent' not in raw:
            continue
        envelope = json.loads(raw)
        body = json.loads(envelope.pop("body"))
        for event in body if isinstance(body, list) else [body]:
            event.pop("clock")
            event.pop("timestamp")
            found.append((event, envelope, exchange))
    return sorted(found, key=lambda each: str(each[0]["uuid"]))


def test_bulk_messages_are_apply_async_messages(clean_ledger: None) -> None:
    target = JobTarget(uuid.uuid4()).header()
    outgoing: list[publishing.Outgoing] = []
    for options in (
        {},
        {"queue": "bulk-messages"},
        {"queue": "bulk-messages", "priority": 3, "time_limit": 20, "soft_time_limit": 10},
        {"queue": "bulk-messages", "mandatory": False},  # not the fast path's: apply_async
    ):
        kwargs = {"value": len(outgoing), "note": "ünïcode"}
        outgoing.append(
            publishing.Outgoing(
                task=echo.name,
                job_id=uuid.uuid4(),
                kwargs=kwargs,
                headers={**target, "x-extra": 1},
                options={**options, **payload_reprs(echo.app, (), kwargs, options)},
            )
        )

    expected, expected_signals = _gathered(
        lambda message, producer: publishing.apply_celery(echo.app, message, producer), outgoing
    )
    sent, signals = _gathered(publishing.Sender(echo.app), outgoing)

    assert len(expected) == 2 * len(outgoing)  # each task message and its task-sent event
    task_messages = [m for m in expected if '"task-sent' not in m[0]]
    assert len(task_messages) == len(outgoing)
    assert [m for m in sent if '"task-sent' not in m[0]] == task_messages  # the same bytes
    assert _events(sent) == _events(expected)  # the same events, one per job
    assert len(_events(sent)) == len(outgoing)
    # the fast path's three in one message, after the task messages; apply_async's alone
    event_keys = [key for raw, _, key in sent if '"task-sent' in raw]
    assert sorted(event_keys) == ["task.multi", "task.sent"]
    assert '"task-sent' in sent[-1][0]
    assert signals == expected_signals
    assert len(signals) == 2 * len(outgoing)
