"""The RabbitMQ bulk's frames (app/ledger/runtime/amqp_frames.py) are py-amqp's, byte for
byte: the same properties and header tables give the same bytes, every value type py-amqp
knows included, and what py-amqp refuses is refused the same way."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from amqp import Message, spec
from amqp.exceptions import FrameSyntaxError
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from app.celery import app
from app.ledger.runtime import amqp_frames
from app.ledger.runtime.amqp_frames import PublishFrames, encode_properties


class Colour(enum.IntEnum):
    RED = 7


class Name(str):
    pass


EVERY_TYPE: dict[str, Any] = {
    "text": "plain",
    "unicode": "zoë — 日本",
    "surrogate": "\udcff",
    "empty": "",
    "raw": b"\x00\xffbytes",
    "none": None,
    "yes": True,
    "no": False,
    "zero": 0,
    "int_max": 2147483647,
    "int_min": -2147483647,
    "below_min": -2147483648,
    "long": 2**40,
    "negative_long": -(2**40),
    "float": 1.5,
    "decimal": Decimal("-12.345"),
    "when": datetime(2026, 12, 1, 2, 3, 4, tzinfo=UTC),
    "int_enum": Colour.RED,
    "str_subclass": Name("sub"),
    "nested": {"a": [1, "b", None, {"c": (True, 2.5)}], "d": {}},
    "list": [None, None],
    "tuple": (1, "two"),
    "empty_list": [],
}


def py_amqp(properties: dict[str, Any]) -> bytes:
    return Message(b"", **properties)._serialize_properties()  # type: ignore[no-any-return]


def celery_properties(body: Any = b"") -> dict[str, Any]:
    """The properties and headers kombu sends for one of the ledger's task messages
    (its ``id`` the body's hash: the same for the same body)."""
    job_id = str(uuid.UUID(int=hash(body) % 2**128))
    message = app.amqp.create_task_message(
        job_id,
        "jobs.import",
        (),
        {"job_id": job_id, "payload": {"rows": 3}},
        time_limit=300,
        soft_time_limit=240,
        expires=datetime(2030, 1, 1, tzinfo=UTC),
        argsrepr="()",
        kwargsrepr="{'job_id': '…'}",
        origin="gen1@host",
        root_id=job_id,
    )
    return {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "application_headers": message.headers,
        "delivery_mode": 2,
        "priority": 0,
        **message.properties,
    }


def test_a_celery_task_message_has_py_amqps_bytes() -> None:
    properties = celery_properties()
    assert properties["application_headers"]["id"]
    assert encode_properties(properties) == py_amqp(properties)


@pytest.mark.parametrize("name", sorted(EVERY_TYPE))
def test_each_value_type_has_py_amqps_bytes(name: str) -> None:
    properties = {"application_headers": {name: EVERY_TYPE[name], "after": 1}}
    assert encode_properties(properties) == py_amqp(properties)


def test_every_property_set_and_none_set_have_py_amqps_bytes() -> None:
    every = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "application_headers": EVERY_TYPE,
        "delivery_mode": 2,
        "priority": 9,
        "correlation_id": "c",
        "reply_to": "r",
        "expiration": "1000",
        "message_id": "m",
        "timestamp": 1_700_000_000,
        "type": "t",
        "user_id": "guest",
        "app_id": "a",
        "cluster_id": "",
    }
    for properties in (every, {}, {"application_headers": {}}, {"content_type": ""}):
        assert encode_properties(properties) == py_amqp(properties)


def test_a_key_is_remembered_once_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(amqp_frames, "_KEYS", {})
    monkeypatch.setattr(amqp_frames, "_LAST", {})
    monkeypatch.setattr(amqp_frames, "_MAX_KEYS", 2)
    table = {f"key{n}": n for n in range(5)}
    first = encode_properties({"application_headers": table})
    assert list(amqp_frames._KEYS) == ["key0", "key1"]
    assert list(amqp_frames._LAST) == ["key0", "key1"]
    assert (
        encode_properties({"application_headers": table})
        == first
        == py_amqp({"application_headers": table})
    )


def test_a_keys_last_value_is_reused_only_for_an_equal_value_of_its_own_type() -> None:
    """``1 == True == 1.0`` and ``0 == False``, but each encodes otherwise: every value in
    turn, at the top and nested, gives py-amqp's bytes."""
    values = [1, True, 1, 1.0, "1", b"1", 0, False, 0, None, 2**40, 2**40, Name("1"), "1"]
    for value in values:
        properties = {"application_headers": {"last": value, "nested": {"last": value}}}
        assert encode_properties(properties) == py_amqp(properties), value


@pytest.mark.parametrize("headers", [{"bad": object()}, {"bad": [object()]}])
def test_a_value_py_amqp_cannot_encode_is_refused_as_py_amqp_refuses_it(
    headers: dict[str, Any],
) -> None:
    with pytest.raises(FrameSyntaxError):
        py_amqp({"application_headers": headers})
    with pytest.raises(FrameSyntaxError, match="not handled by amqp"):
        encode_properties({"application_headers": headers})


class Wire:
    """A connection as py-amqp's frame writer needs it, its socket a list of writes."""

    frame_max = 131072
    bytes_sent = 0

    def __init__(self, accepts: int | None = None) -> None:
        self.written: list[bytes] = []
        self.accepts = accepts  # bytes the socket takes before the connection is lost
        self.connected = True
        self.transport = self.sock = self
        self.frame_writer = frame_writer(self, self)

    def write(self, data: Any) -> None:  # py-amqp's transport.write
        self.written.append(bytes(data))

    def send(self, data: Any) -> int:  # the socket's
        if self.accepts is not None:
            if self.accepts <= 0:
                raise BrokenPipeError(32, "Broken pipe")
            data = bytes(data)[: self.accepts]
            self.accepts -= len(data)
        self.written.append(bytes(data))
        return len(data)


class Channel:
    channel_id = 3

    def __init__(self, accepts: int | None = None) -> None:
        self.connection = Wire(accepts)


def py_amqps_frames(messages: list[tuple[Any, bool, bool]]) -> bytes:
    """What py-amqp's ``basic_publish`` writes for each (body, mandatory, immediate)."""
    theirs = Channel()
    for body, mandatory, immediate in messages:
        arguments = dumps("Bssbb", (0, "ex", "jobs.import", mandatory, immediate))
        message = Message(body, **celery_properties(body))
        theirs.connection.frame_writer(1, 3, spec.Basic.Publish, arguments, message)
    return b"".join(theirs.connection.written)


@pytest.mark.parametrize(("mandatory", "immediate"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("body", [b'{"a": 1}', "zoë", b"", b"x" * 300_000])
def test_a_publish_writes_py_amqps_frames(mandatory: bool, immediate: bool, body: Any) -> None:
    ours = Channel()
    frames = PublishFrames(ours)
    frames.publish(
        Message(body, **celery_properties(body)), "ex", "jobs.import", mandatory, immediate
    )
    frames.flush()
    assert b"".join(ours.connection.written) == py_amqps_frames([(body, mandatory, immediate)])


def test_a_run_is_written_once_a_big_body_split_as_py_amqp_splits_it() -> None:
    """Nothing is written before :meth:`flush`, whatever the bodies weigh; then one write
    holds them all, a body bigger than a frame in py-amqp's frames, and :attr:`size`
    said how many bytes that would be."""
    bodies = [b"first", b"second", b"x" * 300_000, "third", b""]
    ours = Channel()
    frames = PublishFrames(ours)
    for body in bodies:
        frames.publish(Message(body, **celery_properties(body)), "ex", "jobs.import", False, False)
    assert ours.connection.written == []  # in memory until flushed
    expected = py_amqps_frames([(body, False, False) for body in bodies])
    assert frames.size == len(expected)
    frames.flush()
    frames.flush()  # nothing more to write
    assert ours.connection.written == [expected]
    assert frames.size == 0


@pytest.mark.parametrize("whole", [0, 1, 2, 3])
def test_a_run_cut_short_counts_the_messages_not_written_whole(whole: int) -> None:
    """The socket takes the frames of ``whole`` messages and half of the next one, then
    the connection is lost: every message after the ``whole`` ones is unwritten (the
    broker takes a message only once all its frames arrived)."""
    bodies = [b"a" * 50, b"b" * 300_000, b"c" * 70, b"d" * 80]  # the second in 3 frames
    sizes = [len(py_amqps_frames([(body, False, False)])) for body in bodies]
    ours = Channel(accepts=sum(sizes[:whole]) + (sizes[whole] // 2 if whole < 4 else 0))
    frames = PublishFrames(ours)
    for body in bodies:
        frames.publish(Message(body, **celery_properties(body)), "ex", "q", False, False)
    with pytest.raises(BrokenPipeError):
        frames.flush()
    assert frames.unwritten == len(bodies) - whole
    assert not ours.connection.connected
    assert frames.discard() == 0  # the run is gone, written or not


def test_discarding_a_run_writes_nothing_and_counts_its_messages() -> None:
    ours = Channel()
    frames = PublishFrames(ours)
    for body in (b"a", b"b"):
        frames.publish(Message(body, **celery_properties(body)), "ex", "q", False, False)
    assert frames.discard() == 2
    frames.flush()
    assert ours.connection.written == []
