"""A Redis connection killed while a pipeline is on it (fault injection for the bulk
publish, tests/faults/test_bulk_kill.py).

Inside :func:`killed_mid_pipeline`, the next redis-py pipeline of this process with more
than ``after`` commands runs its first ``after`` commands on the real Redis (their
replies are read: Redis executed them), then another client kills its connection
(``CLIENT KILL ID``), then the rest is sent on the killed connection, which fails as a
connection lost mid-pipeline does: the caller gets redis-py's ``ConnectionError`` and
none of the replies. Nothing else of redis-py, kombu or Celery is replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.client import Pipeline


@dataclass
class Cut:
    """What the cut pipeline delivered before its connection was killed."""

    #: The task id of each message LPUSHed before the kill, in order.
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
