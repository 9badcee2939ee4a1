"""RabbitMQ faults made from outside a worker: its connections closed by the broker
(``rabbitmqctl close_connection``), as a network cut or a broker-side kill looks to it.

A connection is found by its peer port: ``ss`` names the local ports a process's sockets
to the broker use, ``rabbitmqctl list_connections`` the connection process of each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.faults import free_port, wait_until

#: The AMQP port of the machine's RabbitMQ (the test broker URL names it).
AMQP_PORT = 5672
#: The server and its control tool, as the Debian package installs them (their
#: /usr/sbin wrappers always start the machine's own node).
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def broker_ports(pid: int) -> set[int]:
    """The local ports of process ``pid``'s established connections to the broker."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", "dport", "=", f":{AMQP_PORT}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ports = set()
    for line in out.splitlines():
        if f"pid={pid}," in line:
            local = line.split()[2]  # Recv-Q Send-Q Local:Port Peer:Port Process
            ports.add(int(local.rsplit(":", 1)[1]))
    return ports


def close_connections(pid: int, reason: str = "jobledger fault test: connection cut") -> int:
    """Have RabbitMQ close every connection of process ``pid``; how many it closed."""
    ports = wait_until(lambda: broker_ports(pid), 30, f"connections of process {pid}")
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "peer_port"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    closed = 0
    for line in listed.splitlines():
        found = re.match(r"(<\S+>)\s+(\d+)", line)
        if found and int(found.group(2)) in ports:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", found.group(1), reason],
                capture_output=True,
                check=True,
            )
            closed += 1
    return closed


@contextlib.contextmanager
def refusing_beyond(queue: str, length: int, broker_url: str) -> Iterator[str]:
    """``queue`` under a RabbitMQ policy of ``length`` messages at most, refusing more
    (``overflow: reject-publish``: publisher confirms answer ``basic.nack``), for the
    ``with`` block."""
    vhost = urlsplit(broker_url).path.lstrip("/") or "/"
    policy = f"jobledger-test-{queue}"
    definition = json.dumps({"max-length": length, "overflow": "reject-publish"})
    subprocess.run(
        [
            *("rabbitmqctl", "-q", "set_policy", "-p", vhost, "--apply-to", "queues"),
            *(policy, f"^{queue}$", definition),
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield queue
    finally:
        subprocess.run(
            ["rabbitmqctl", "-q", "clear_policy", "-p", vhost, policy], capture_output=True
        )


class PrivateRabbitMQ:
    """A throwaway RabbitMQ node owned by the test (its own node name, port and data
    directory, run as the ``rabbitmq`` user like the machine's node), so that a test can
    restart a broker without touching the one everybody else uses. Starting a node takes
    20 to 30 s on a busy 2-core machine."""

    def __init__(self) -> None:
        self.port = free_port()
        self.node = f"jltest{self.port}@localhost"
        self.directory = Path(tempfile.mkdtemp(prefix="jobledger-rabbitmq-"))
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen[bytes] | None = None
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        )
        shutil.chown(self.directory, user="rabbitmq")
        shutil.chown(self.directory / "rabbitmq.conf", user="rabbitmq")

    @staticmethod
    def available() -> str | None:
        """Why a private node cannot be made here, or None when it can."""
        if os.geteuid() != 0:
            return "a private RabbitMQ node is started as user rabbitmq: needs root"
        if not Path(SERVER).exists():
            return f"no {SERVER}"
        return None

    def start(self) -> None:
        variables = {
            "HOME": "/var/lib/rabbitmq",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
        }
        exports = " ".join(f"{name}={value}" for name, value in variables.items())
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "su",
                    "rabbitmq",
                    "-s",
                    "/bin/sh",
                    "-c",
                    f"cd {self.directory} && {exports} exec {SERVER}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._listens, 120, f"private RabbitMQ {self.node} up")

    def stop(self) -> None:
        """Stop the node as a restart would (``rabbitmqctl stop``: durable queues and
        persistent messages are kept on disk)."""
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(
            [
                "su",
                "rabbitmq",
                "-s",
                "/bin/sh",
                "-c",
                f"HOME=/var/lib/rabbitmq {CTL} -n {self.node} stop",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        self.process.wait(60)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def queue_length(self, name: str) -> int:
        """Messages waiting in queue ``name`` of this node (0 when there is no queue)."""
        from amqp.exceptions import NotFound

        from app.celery import app

        with app.connection_for_read(self.url) as connection:
            channel = connection.channel()
            try:
                return int(channel.queue_declare(name, passive=True).message_count)
            except NotFound:
                return 0

    def _listens(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "server.log").read_text(errors="replace")
            raise RuntimeError(f"private RabbitMQ exited:\n{log[-3000:]}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0
