"""The processes of the multi-host test that stand on the machine itself, each started
with the broker under test in its environment: a producer and the lifeline's beat.

Usage::

    python -m tests.support.hosts_roles publish --queue Q --short 300 --long 24   # ids as JSON
    python -m tests.support.hosts_roles lifeline --interval 2    # one pass every 2 s, forever
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.support.hosts import lifeline_loop, publish


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    publishing = commands.add_parser("publish")
    publishing.add_argument("--queue", required=True)
    publishing.add_argument("--short", type=int, default=0)
    publishing.add_argument("--long", type=int, default=0)
    publishing.add_argument("--min-seconds", type=float, default=3)
    publishing.add_argument("--max-seconds", type=float, default=6)
    publishing.add_argument("--seed", type=int, default=16)
    looping = commands.add_parser("lifeline")
    looping.add_argument("--interval", type=float, default=60)
    args = parser.parse_args(argv)
    if args.command == "publish":
        seconds = (args.min_seconds, args.max_seconds)
        ids = publish(args.queue, args.short, args.long, seconds, args.seed)
        json.dump(ids, sys.stdout)
    else:
        lifeline_loop(args.interval)


if __name__ == "__main__":
    main()
