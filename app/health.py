"""Health checks of jobledger's processes: what ``/readyz`` asks, and the commands the
compose healthchecks (and any orchestrator) run.

Usage::

    python -m app.health worker [--node celery@HOST] [--timeout 5]   # this host's worker
    python -m app.health beat                                        # a beat holds the lease
    python -m app.health http http://127.0.0.1:8000/healthz           # an HTTP endpoint

Each exits 0 when healthy and 1 otherwise, printing one line that says which check
failed. Why these:

- **worker**: the worker's own node answers a ping through the broker (``app.control.ping``
  to ``celery@$HOSTNAME`` by default, the node name of a worker started without ``-n``):
  the main process is alive, connected to the broker and consuming its control queue. It
  is what ``celery -A app inspect ping -d celery@$HOSTNAME`` checks, with an exit code of
  ours and one line of output. A worker busy with long jobs still answers (control
  messages are handled by the main process, not the pool).
- **beat**: the ledger answers and some beat holds the lease (expired for less than
  ``JOBLEDGER_BEAT_LEASE_SECONDS``): an active beat renews it every tick, so a hung or
  disconnected one lets it lapse; a standby is healthy while another beat is active
  (:mod:`app.ledger.runtime.beat`).
- **http**: a GET answered 2xx, for images without curl (the API's ``/healthz``, Flower's
  ``/healthcheck``).

:func:`ledger_problem` and :func:`broker_problem` are the two checks of ``GET /readyz``
(:mod:`app.api.health`): each says what is wrong, or None.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import urllib.request
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select

from app import db
from app.config import settings

log = logging.getLogger(__name__)

#: Seconds the broker and a worker are given to answer a check.
CHECK_TIMEOUT = 5.0


def ledger_problem() -> str | None:
    """None when the ledger answers a query, else why not (no URL or credentials in it)."""
    try:
        with db.engine().connect() as connection:
            connection.execute(select(1)).scalar_one()
    except Exception as error:  # any failure means "not ready"; the log has the detail
        log.warning("ledger not ready: %s", error)
        return f"unreachable ({type(error).__name__})"
    return None


def broker_problem(timeout: float = CHECK_TIMEOUT) -> str | None:
    """None when a connection to the broker can be made, else why not."""
    from app.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            connection.default_channel  # noqa: B018  (opening a channel talks to the broker)
    except Exception as error:  # kombu raises per transport: all mean "not ready"
        log.warning("broker not ready: %s", error)
        return f"unreachable ({type(error).__name__})"
    return None


def worker_answers(node: str, timeout: float = CHECK_TIMEOUT) -> bool:
    """Whether worker ``node`` answers a ping within ``timeout`` seconds."""
    from app.celery import app

    replies = app.control.ping(destination=[node], timeout=timeout)
    return any(node in reply for reply in replies)


def beat_lease_problem() -> str | None:
    """None when some beat holds the lease (or let it lapse less than a lease ago)."""
    from app.ledger import engines
    from app.ledger.runtime.beat import LEASE_NAME, BeatSettings, Lease

    problem = ledger_problem()
    if problem is not None:
        return f"ledger {problem}"
    lease = Lease(LEASE_NAME, holder="health-check", seconds=0).state()
    if lease is None:
        return "no beat ever held the lease"
    with db.engine().connect() as connection:
        now = engines.current().database_now(connection)
    grace = timedelta(seconds=settings.of(BeatSettings).beat_lease_seconds)
    if lease.expires_at + grace < now:
        return f"the beat lease of {lease.holder} expired at {lease.expires_at.isoformat()}"
    return None


def http_problem(url: str, timeout: float = CHECK_TIMEOUT) -> str | None:
    """None when GET ``url`` answers 2xx within ``timeout``, else what it answered."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (checked above)
            status = int(answer.status)
    except Exception as error:  # an HTTP error status, a refused connection, a timeout
        return f"{url}: {error}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m app.health`` (the compose file's test reads it)."""
    parser = argparse.ArgumentParser(prog="python -m app.health", description=__doc__)
    checks = parser.add_subparsers(dest="check", required=True)
    worker = checks.add_parser("worker", help="this host's worker answers a ping")
    worker.add_argument("--node", default=f"celery@{socket.gethostname()}")
    worker.add_argument("--timeout", type=float, default=CHECK_TIMEOUT)
    checks.add_parser("beat", help="the ledger answers and a beat holds the lease")
    http = checks.add_parser("http", help="GET URL answers 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=CHECK_TIMEOUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one check; 0 when healthy, 1 when not (one line on stdout either way)."""
    arguments = build_parser().parse_args(argv)
    if arguments.check == "worker":
        healthy = worker_answers(arguments.node, arguments.timeout)
        problem = None if healthy else f"worker {arguments.node} did not answer a ping"
    elif arguments.check == "beat":
        problem = beat_lease_problem()
    else:
        problem = http_problem(arguments.url, arguments.timeout)
    print(f"{arguments.check}: {problem or 'healthy'}")
    return 0 if problem is None else 1


if __name__ == "__main__":
    sys.exit(main())
