"""A real ``uvicorn app.api.main:app`` process for tests that need the server itself:
socket-level behaviour (what it reads before answering), its memory, its own database
connections (tagged with ``application_name`` so a test can terminate exactly those)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from app.api.auth import digest_of
from tests.support.api import KEY_ENTRIES
from tests.support.processes import ROOT


@dataclass
class ApiServer:
    """A running API server: where it listens and how to reach its process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    #: ``application_name`` of its PostgreSQL connections (``pg_stat_activity``).
    application_name: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api_keys_json() -> str:
    """``JOBLEDGER_API_KEYS`` for the test keys (:mod:`tests.support.api`)."""
    return json.dumps({digest_of(key): entry for key, entry in KEY_ENTRIES.items()})


def start_api_server(log_dir: Path, **environment: str) -> ApiServer:
    """Start uvicorn on a free port with the test keys (and ``JOBLEDGER_*`` overrides
    given as ``environment``) and wait until it answers."""
    port = free_port()
    name = f"jobledger-api-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "JOBLEDGER_API_KEYS": api_keys_json(), "PGAPPNAME": name}
    env.update(environment)
    log_path = log_dir / f"{name}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ApiServer(process=process, port=port, log_path=log_path, application_name=name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)  # not listening yet: poll again
    server.stop()
    raise RuntimeError(f"the API did not answer within 60 s:\n{server.log()}")
