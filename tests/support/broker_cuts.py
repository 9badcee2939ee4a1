"""A broker connection lost while the bulk publish sends a chunk on it (fault injection
for tests/faults/test_bulk_kill.py). Nothing else of redis-py, py-amqp, kombu or Celery
is replaced.

Redis, :func:`killed_mid_pipeline`: the next redis-py pipeline of this process with more
than ``after`` commands runs its first ``after`` commands on the real Redis (their
replies are read: Redis executed them), then another client kills its connection
(``CLIENT KILL ID``), then the rest is sent on the killed connection, which fails as a
connection lost mid-pipeline does: the caller gets redis-py's ``ConnectionError`` and
none of the replies.

RabbitMQ, :func:`shut_mid_confirm_batch`: the bulk path's frame writer
(:class:`~app.ledger.runtime.amqp_frames.PublishFrames`, on its own confirm-mode channel)
takes ``after`` messages, writes them to the socket (a run ends there, as it ends every
``READ_EVERY`` messages), then the connection's socket is shut both ways (what was
written is still delivered, then RabbitMQ sees the connection close), so the next run's
write fails as on a lost connection, none of its messages written, and none of the
broker's confirms is read.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.client import Pipeline

from app.ledger.runtime.amqp_frames import PublishFrames


@dataclass
class Cut:
    """What was sent on the cut connection before it was lost."""

    #: The task id of each task message sent before the cut, in order.
    arrived: list[str] = field(default_factory=list)
    killed: bool = False


@contextmanager
def killed_mid_pipeline(url: str, *, after: int) -> Iterator[Cut]:
    """Kill the connection of the next pipeline longer than ``after`` commands, after its
    first ``after`` commands (see the module docstring); ``url``: its Redis."""
    cut = Cut()
    execute = Pipeline._execute_pipeline

    def cut_short(
        self: Pipeline, connection: Any, commands: list[Any], raise_on_error: bool
    ) -> Any:
        if cut.killed or len(commands) <= after:
            return execute(self, connection, commands, raise_on_error)
        cut.killed = True
        execute(self, connection, commands[:after], False)  # in Redis: replies read
        cut.arrived = [_task_id(args) for args, _ in commands[:after] if _is_lpush(args)]
        connection.send_command("CLIENT", "ID")
        own = connection.read_response()
        killer = redis.Redis.from_url(url)
        try:
            assert killer.client_kill_filter(_id=own) == 1
        finally:
            killer.close()
        return execute(self, connection, commands[after:], raise_on_error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Pipeline, "_execute_pipeline", cut_short)
        yield cut
    assert cut.killed, f"no pipeline of more than {after} commands was sent"


def _is_lpush(args: tuple[Any, ...]) -> bool:
    name = args[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).upper() == "LPUSH"


def _task_id(args: tuple[Any, ...]) -> str:
    return str(json.loads(args[-1])["headers"]["id"])


@contextmanager
def shut_mid_confirm_batch(*, after: int) -> Iterator[Cut]:
    """Shut the connection of the next bulk that publishes more than ``after`` messages on
    RabbitMQ, once its first ``after`` are written (see the module docstring)."""
    cut = Cut()
    publish, flush = PublishFrames.publish, PublishFrames.flush
    taken: list[str | None] = []

    def cut_short(self: PublishFrames, message: Any, *args: Any) -> None:
        if cut.killed:
            return publish(self, message, *args)
        if len(taken) == after:
            flush(self)
            cut.arrived = [task_id for task_id in taken if task_id]
            cut.killed = True
            self.channel.connection.transport.sock.shutdown(socket.SHUT_RDWR)
            return publish(self, message, *args)
        publish(self, message, *args)
        headers = message.properties.get("application_headers") or {}
        taken.append(str(headers["id"]) if headers.get("id") else None)
        return None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PublishFrames, "publish", cut_short)
        yield cut
    assert cut.killed, f"no bulk published more than {after} messages"
