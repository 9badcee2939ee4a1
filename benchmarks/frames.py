"""Frames: encoding the properties and headers of the ledger's task messages, py-amqp's
encoder against the RabbitMQ bulk path's (app/ledger/runtime/amqp_frames.py).

Usage::

    .venv/bin/python -m benchmarks.frames                  # 5,000 messages, 5 rounds
    .venv/bin/python -m benchmarks.frames --n 20000 --rounds 7 --note "after X"

The messages are Celery's own for ledger jobs (``app.amqp.create_task_message``: a new
task id each, the ledger's headers, kwargs, time limits and the redacted reprs), with
the properties kombu sends them with. Each round encodes all of them with py-amqp
(``GenericContent._serialize_properties``) and with ``encode_properties``, alternated in
one process; the bytes are compared first (they must be equal). Prints µs per message
(medians over the rounds) and their ratio; appends to ``results/frames.jsonl``. No
broker and no database are used: this is the Python cost only.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from amqp import Message

from app.celery import app
from app.ledger.runtime.amqp_frames import encode_properties
from app.ledger.runtime.target import JobTarget
from benchmarks import _harness as h


def properties(count: int) -> list[dict[str, Any]]:
    """The properties of ``count`` ledger task messages, as kombu sends them."""
    made = []
    for _ in range(count):
        job_id = uuid.uuid4()
        message = app.amqp.create_task_message(
            str(job_id),
            "example.echo",
            (),
            {"value": 1, "tenant": "default"},
            time_limit=300,
            soft_time_limit=270,
            origin="gen1@host",
            root_id=str(job_id),
            argsrepr="()",
            kwargsrepr="{'value': 1, 'tenant': 'default'}",
            headers=JobTarget(job_id).header(),
        )
        made.append(
            {
                "content_type": "application/json",
                "content_encoding": "utf-8",
                "application_headers": message.headers,
                "delivery_mode": 2,
                "priority": 0,
                **message.properties,
            }
        )
    return made


def per_message(encode: Any, messages: list[dict[str, Any]]) -> float:
    """Microseconds per message of ``encode`` over ``messages``."""
    started = time.perf_counter()
    for each in messages:
        encode(each)
    return (time.perf_counter() - started) / len(messages) * 1e6


def py_amqp(each: dict[str, Any]) -> bytes:
    return Message(b"", **each)._serialize_properties()  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    messages = properties(args.n)
    assert all(encode_properties(m) == py_amqp(m) for m in messages), "bytes differ"
    theirs, ours = [], []
    for number in range(1, args.rounds + 1):
        theirs.append(per_message(py_amqp, messages))
        ours.append(per_message(encode_properties, messages))
        print(f"round {number}: py-amqp {theirs[-1]:.1f} µs, ours {ours[-1]:.1f} µs per message")
    figures = {
        "py_amqp_us": h.median(theirs),
        "ours_us": h.median(ours),
        "ratio": h.median(theirs) / h.median(ours),
        "rounds": {"py_amqp_us": theirs, "ours_us": ours},
    }
    print(
        f"medians: py-amqp {figures['py_amqp_us']:.1f} µs, ours {figures['ours_us']:.1f} µs "
        f"per message: {figures['ratio']:.2f}x faster"
    )
    h.Record("frames", {"n": args.n, "rounds": args.rounds, "note": args.note}, figures).write()


if __name__ == "__main__":
    main()
