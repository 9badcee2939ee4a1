"""The ``basic.publish`` frames of a RabbitMQ bulk: py-amqp's bytes, made faster and written
to the socket in runs.

Usage::

    from app.ledger.runtime.amqp_frames import PublishFrames

    frames = PublishFrames(channel)
    frames.publish(message, exchange, routing_key, mandatory, immediate)  # in memory
    frames.flush()  # on the socket: before reading the connection or awaiting confirms

Why: py-amqp (kombu's ``pyamqp`` transport) encodes each message's properties and header
table in pure Python with a generic encoder (a ``BytesIO`` per table, a format string
walked per value, every key encoded again) and writes each message to the socket on its
own: measured, a third of a RabbitMQ ``apply_many`` (benchmarks/RESULTS.md). Celery's
headers have the same keys on every message and mostly the same values, so each key's
encoding is remembered here (:data:`_KEYS`, bounded), and so is the entry of each key's
last scalar value (:data:`_LAST`); a value is encoded by a function chosen by its exact
type; any other type (``Decimal``, ``datetime``, a subclass) is encoded by py-amqp's own
``_write_item``. The frames of many messages go out in one write; a body too big for
one frame is split as py-amqp splits it (the caller bounds a run's bytes, :attr:`size`).

``tests/unit/test_amqp_frames.py`` checks the bytes against py-amqp's: every value type
py-amqp knows, every property, bodies of every size; what py-amqp refuses is refused.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from struct import pack
from typing import Any

from amqp import Message, spec
from amqp.exceptions import FrameSyntaxError, RecoverableConnectionError
from amqp.serialization import (
    ILLEGAL_TABLE_TYPE_WITH_KEY,
    ILLEGAL_TABLE_TYPE_WITH_VALUE,
    _write_item,
)

#: The basic class's properties in their wire order: (flag bit, name, kind).
_LAYOUT = tuple(
    (1 << (15 - index), name, kind) for index, (name, kind) in enumerate(Message.PROPERTIES)
)
_PUBLISH = pack(">HH", *spec.Basic.Publish)
_HEADER = pack(">HH", spec.Basic.Publish[0], 0)
#: A socket error that leaves the connection usable (py-amqp's transport: ``_UNAVAIL``).
_UNAVAILABLE = {errno.EAGAIN, errno.EINTR, errno.ENOENT, errno.EWOULDBLOCK}
#: Encoded table keys (length octet + UTF-8), at most this many remembered.
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 1024
#: The types whose values are compared to a key's last one (equal values of one of
#: them encode alike; ``1 == True`` and ``0.0 == -0.0`` are why the type is compared
#: and floats are not among them).
_SCALARS = frozenset({str, bytes, int, bool, type(None)})
#: Per table key (at most ``_MAX_KEYS``): its last scalar value and the bytes of that
#: entry (key and value). Celery's headers repeat most values from message to message.
_LAST: dict[str, tuple[type, Any, bytes]] = {}


class PublishFrames:
    """The ``basic.publish`` frames of one channel, written to the socket in runs: py-amqp's
    ``basic_publish`` minus its read of waiting frames, its confirm wait and its socket
    write per message. Call :meth:`flush` before reading from the connection or waiting
    for confirms: until then, what :meth:`publish` took is only in memory."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._pending: list[bytes] = []
        self._ends: list[int] = []  # where each message of the run ends in its bytes
        self._size = 0
        #: After a failed :meth:`flush`: how many of its run's last messages were not
        #: written whole. The broker takes a message only once all its frames arrived, so
        #: these never reached it; the others may have.
        self.unwritten = 0

    @property
    def size(self) -> int:
        """Bytes in the run, not written yet."""
        return self._size

    def publish(
        self, message: Message, exchange: str, key: str, mandatory: bool, immediate: bool
    ) -> None:
        """Add ``message``'s frames to the run: a method frame, a header frame and its
        body in frames of at most the connection's ``frame_max`` (as py-amqp splits a
        body too big for one frame: the same bytes)."""
        connection = self.channel.connection
        if not connection:
            raise RecoverableConnectionError("basic_publish: connection closed")
        arguments = b"\x00\x00" + _shortstr(exchange) + _shortstr(key)
        arguments += bytes((bool(mandatory) | bool(immediate) << 1,))
        body = message.body
        if isinstance(body, str):  # as py-amqp's frame writer encodes a text body
            body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
        channel_id = self.channel.channel_id
        method = _PUBLISH + arguments
        header = _HEADER + pack(">Q", len(body)) + encode_properties(message.properties)
        frames = [
            pack(">BHI", 1, channel_id, len(method)),
            method,
            b"\xce",
            pack(">BHI", 2, channel_id, len(header)),
            header,
            b"\xce",
        ]
        largest = connection.frame_max - 8
        for start in range(0, len(body), largest):
            part = body[start : start + largest]
            frames += (pack(">BHI", 3, channel_id, len(part)), part, b"\xce")
        self._pending += frames
        self._size += sum(map(len, frames))
        self._ends.append(self._size)

    def flush(self) -> None:
        """Write the run to the socket (sets :attr:`unwritten` if that fails)."""
        if not self._pending:
            return
        run, ends = b"".join(self._pending), self._ends
        self.discard()
        connection = self.channel.connection
        if not connection:
            self.unwritten = len(ends)
            raise RecoverableConnectionError("basic_publish: connection closed")
        written = 0
        transport = connection.transport
        view = memoryview(run)
        try:  # sendall, counting what the socket took (as py-amqp's transport.write)
            while written < len(run):
                written += transport.sock.send(view[written:])
        except OSError as error:
            self.unwritten = sum(1 for end in ends if end > written)
            if not isinstance(error, socket.timeout) and error.errno not in _UNAVAILABLE:
                transport.connected = False
            raise
        connection.bytes_sent += 1  # as py-amqp's writer counts a write (heartbeats)

    def discard(self) -> int:
        """Forget the run not written yet; how many messages it held."""
        count = len(self._ends)
        self._pending, self._ends, self._size = [], [], 0
        return count


def encode_properties(properties: dict[str, Any]) -> bytes:
    """The property flags and list of a content header frame: py-amqp's
    ``GenericContent._serialize_properties`` for ``basic``, faster."""
    flags = 0
    parts = [b""]
    for bit, name, kind in _LAYOUT:
        value = properties.get(name)
        if value is None:
            continue
        flags |= bit
        if kind == "s":
            parts.append(_shortstr(value or ""))
        elif kind == "F":
            parts.append(_table(value or {}))
        elif kind == "o":
            parts.append(pack("B", value))
        elif kind == "L":
            parts.append(pack(">Q", value))
        else:  # pragma: no cover - basic has no other kind
            raise ValueError(f"unknown property kind {kind!r} of {name}")
    parts[0] = pack(">H", flags)
    return b"".join(parts)


def _shortstr(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return pack("B", len(raw)) + raw


def _key(name: str | bytes) -> bytes:
    encoded = _KEYS.get(name) if type(name) is str else None
    if encoded is None:
        encoded = _shortstr(name)
        if type(name) is str and len(_KEYS) < _MAX_KEYS:
            _KEYS[name] = encoded
    return encoded


def _table(table: dict[Any, Any]) -> bytes:
    parts = []
    for name, value in table.items():
        kind = type(value)
        last = _LAST.get(name) if kind in _SCALARS else None
        if last is not None and last[0] is kind and last[1] == value:
            parts.append(last[2])  # the same value as this key's last one: its bytes
            continue
        try:
            entry = _key(name) + _item(value)
        except ValueError:
            raise FrameSyntaxError(
                ILLEGAL_TABLE_TYPE_WITH_KEY.format(type(value), name, value)
            ) from None
        if kind in _SCALARS and type(name) is str and (name in _LAST or len(_LAST) < _MAX_KEYS):
            _LAST[name] = (kind, value, entry)
        parts.append(entry)
    data = b"".join(parts)
    return pack(">I", len(data)) + data


def _array(values: list[Any] | tuple[Any, ...]) -> bytes:
    parts = []
    for value in values:
        try:
            parts.append(_item(value))
        except ValueError:
            raise FrameSyntaxError(
                ILLEGAL_TABLE_TYPE_WITH_VALUE.format(type(value), value)
            ) from None
    data = b"".join(parts)
    return pack(">I", len(data)) + data


def _str(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return b"S" + pack(">I", len(raw)) + raw


def _bytes(value: bytes) -> bytes:
    return b"S" + pack(">I", len(value)) + value


def _int(value: int) -> bytes:
    if value > 2147483647 or value < -2147483647:
        return pack(">cq", b"L", value)
    return pack(">ci", b"I", value)


def _other(value: Any) -> bytes:
    """py-amqp's own encoding (``Decimal``, ``datetime``, subclasses of the types below)."""
    parts: list[bytes] = []
    _write_item(value, parts.append, [])
    return b"".join(parts)


_BY_TYPE: dict[type, Callable[[Any], bytes]] = {
    str: _str,
    bytes: _bytes,
    type(None): lambda _: b"V",
    bool: lambda value: b"t\x01" if value else b"t\x00",
    int: _int,
    float: lambda value: pack(">cd", b"d", value),
    dict: lambda value: b"F" + _table(value),
    list: lambda value: b"A" + _array(value),
    tuple: lambda value: b"A" + _array(value),
}


def _item(value: Any) -> bytes:
    return _BY_TYPE.get(type(value), _other)(value)
