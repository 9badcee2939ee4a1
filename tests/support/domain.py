"""Test support for the typed tasks: reading the domain tables and the ledger's side
records (logs, files, steps) with plain SQL, writing fixture files, and a local HTTP
server whose responses the test releases piece by piece (a "slow source" without sleeps).
"""

from __future__ import annotations

import csv
import hashlib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app import db


def query(sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.engine().connect() as connection:
        return [dict(row) for row in connection.execute(text(sql), params).mappings()]


def execute(sql: str, **params: Any) -> None:
    with db.engine().begin() as connection:
        connection.execute(text(sql), params)


def dataset_rows(name: str, tenant: str = "default") -> list[dict[str, Any]]:
    """The rows' JSON data of a dataset in import order."""
    return [
        row["data"]
        for row in query(
            "SELECT r.data FROM dataset_rows r JOIN datasets d ON d.id = r.dataset_id "
            "WHERE d.name = :name AND d.tenant = :tenant ORDER BY r.id",
            name=name,
            tenant=tenant,
        )
    ]


def count_rows(name: str, tenant: str = "default") -> int:
    return len(
        query(
            "SELECT r.id FROM dataset_rows r JOIN datasets d ON d.id = r.dataset_id "
            "WHERE d.name = :name AND d.tenant = :tenant",
            name=name,
            tenant=tenant,
        )
    )


def files(job_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return query("SELECT * FROM job_files WHERE job_id = :id ORDER BY id", id=str(job_id))


def logs(job_id: uuid.UUID | str) -> list[str]:
    rows = query("SELECT message FROM job_logs WHERE job_id = :id ORDER BY id", id=str(job_id))
    return [row["message"] for row in rows]


def steps(job_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return query("SELECT * FROM job_steps WHERE job_id = :id ORDER BY position", id=str(job_id))


def unique(prefix: str) -> str:
    """A name no other test of the session uses (domain tables are not truncated)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold an exclusive lock on a domain table for the ``with`` block: a job that reads
    or writes it waits right there, so a test knows where the job is (mid-run) without
    sleeping."""
    with db.engine().begin() as connection:
        connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds (or fail saying ``what`` did not happen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)  # polling interval of the check, not a stand-in for work
    raise AssertionError(f"{what} did not happen within {timeout}s")


@dataclass
class Release:
    """A response body sent in parts: ``parts[0]`` at once, each later part only after
    the test calls :meth:`next_part`."""

    parts: list[bytes]
    gates: list[threading.Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gates = [threading.Event() for _ in self.parts[1:]]

    def next_part(self) -> None:
        for gate in self.gates:
            if not gate.is_set():
                gate.set()
                return

    def release_all(self) -> None:
        for gate in self.gates:
            gate.set()


@dataclass
class Redirect:
    """A ``302 Found`` to ``location``."""

    location: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        body = self.server.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        if isinstance(body, Redirect):
            self.send_response(302)
            self.send_header("Location", body.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        if isinstance(body, bytes):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # No length: the body ends when the connection closes (HTTP/1.0 style).
        self.end_headers()
        self.wfile.write(body.parts[0])
        self.wfile.flush()
        for gate, part in zip(body.gates, body.parts[1:], strict=True):
            if not gate.wait(timeout=60):
                return
            self.wfile.write(part)
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, bytes | Release | Redirect]


@contextmanager
def http_server(
    routes: dict[str, bytes | Release | Redirect], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve ``routes`` (path -> body) on 127.0.0.1 (over TLS with ``tls``); yields the
    base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.routes = routes
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        for body in routes.values():
            if isinstance(body, Release):
                body.release_all()
        server.shutdown()
        server.server_close()
