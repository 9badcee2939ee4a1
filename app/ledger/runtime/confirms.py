"""The bookkeeping of RabbitMQ publisher confirms on one channel: which publishes the
broker acknowledged, which it refused, which it has not answered (yet, or ever).

Usage::

    confirms: Confirms[uuid.UUID] = Confirms()  # Confirms(first_tag=n): a channel in use
    confirms.published(job_id)         # each publish on the channel, in order (None: not a job's)
    confirms.withdrawn(count)          # the last count publishes were never written whole
    confirms.answered(tag, multiple, ok=True)   # each basic.ack (ok=False: basic.nack)
    confirms.complete, confirms.acked(), confirms.nacked(), confirms.unanswered()

On a channel in confirm mode RabbitMQ numbers the publishes from 1 (the delivery tags;
a :class:`Confirms` of a channel that published before starts at the channel's next
tag, ``first_tag``: the answers to earlier tags are not its own) and answers each once,
with ``basic.ack`` (the message is the broker's: queued, on disk for a persistent
message to a durable queue) or ``basic.nack`` (it was not taken). An answer with
``multiple=True`` covers every tag up to and including its own that was not answered
before. A publish still unanswered when the channel or its connection is lost (or the
wait gives up) may or may not have reached a queue: :meth:`Confirms.unanswered`.
Pure logic, no I/O: :mod:`app.ledger.runtime.publishing` feeds it the channel's events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")


class Confirms(Generic[K]):
    """The publishes of one confirm-mode channel, each with the item it carries (a job
    id; ``None`` for a publish that is no one's, such as a task-sent event)."""

    def __init__(self, first_tag: int = 1) -> None:
        self.first_tag = first_tag
        self._items: list[K | None] = []  # the item of tag t at t - first_tag
        self._answers: dict[int, bool] = {}  # index (tag - first_tag) -> acknowledged
        self._low = 0  # every index below it is answered

    def __len__(self) -> int:
        """How many publishes were noted (withdrawn ones not counted)."""
        return len(self._items)

    @property
    def next_tag(self) -> int:
        """The delivery tag the channel's next publish will get."""
        return self.first_tag + len(self._items)

    def published(self, item: K | None) -> int:
        """Note the channel's next publish; its delivery tag."""
        self._items.append(item)
        return self.next_tag - 1

    def withdrawn(self, count: int) -> None:
        """The last ``count`` publishes never reached the broker (their frames were not
        all written before the connection was lost): they are no publishes at all."""
        if count > 0:
            del self._items[-count:]
            for index in [index for index in self._answers if index >= len(self._items)]:
                del self._answers[index]

    def answered(self, tag: int, multiple: bool, *, ok: bool) -> None:
        """A ``basic.ack`` (``ok``) or ``basic.nack`` for ``tag`` (and, with ``multiple``,
        every earlier tag not answered yet). An answer for a tag never published, or one
        already answered (or a tag before :attr:`first_tag`), changes nothing."""
        index = tag - self.first_tag
        last = min(index, len(self._items) - 1)
        for each in range(self._low, last + 1) if multiple else (index,):
            if 0 <= each <= last:
                self._answers.setdefault(each, ok)
        while self._low in self._answers:
            self._low += 1

    @property
    def complete(self) -> bool:
        """Whether every publish so far is answered."""
        return len(self._answers) == len(self._items)

    def acked(self) -> set[K]:
        """The items whose publish the broker acknowledged."""
        return self._items_where(lambda answer: answer is True)

    def nacked(self) -> set[K]:
        """The items whose publish the broker refused."""
        return self._items_where(lambda answer: answer is False)

    def unanswered(self) -> set[K]:
        """The items whose publish is not answered: they may or may not be in a queue."""
        return self._items_where(lambda answer: answer is None)

    def _items_where(self, keep: Callable[[bool | None], bool]) -> set[K]:
        return {
            item
            for index, item in enumerate(self._items)
            if item is not None and keep(self._answers.get(index))
        }
